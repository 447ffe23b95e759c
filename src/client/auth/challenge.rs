//! `WWW-Authenticate` challenges (RFC 7235 §4.1): a scheme, then either a
//! token68 or comma-separated `name=value` parameters whose values are tokens or
//! quoted strings; one header may carry several challenges, and a response may
//! carry several headers.

/// Longest header value parsed; a registry has no reason to send more, and a
/// hostile one should not make the client work hard.
pub const MAX_HEADER: usize = 16 << 10;

/// One challenge: the scheme in lower case and its parameters (names in lower
/// case, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the WWW-Authenticate header is longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("malformed WWW-Authenticate header at byte {0}")]
    Syntax(usize),
    #[error("unterminated quoted string in WWW-Authenticate")]
    Unterminated,
    #[error("WWW-Authenticate names the parameter {0:?} twice in one challenge")]
    Duplicate(String),
}

/// Parses one header value into its challenges.
pub fn parse(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    if header.len() > MAX_HEADER {
        return Err(ChallengeError::TooLong);
    }
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_list_separators();
        if p.done() {
            return Ok(out);
        }
        let scheme = p.token().ok_or(ChallengeError::Syntax(p.i))?;
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        // At least one space separates the scheme from what it carries.
        let had_space = p.skip_ws();
        if had_space && !p.done() && p.peek() != Some(b',') {
            if let Some(t68) = p.token68() {
                challenge.params.push((String::new(), t68));
            } else {
                p.params(&mut challenge)?;
            }
        }
        out.push(challenge);
        p.skip_ws();
        match p.peek() {
            None => return Ok(out),
            Some(b',') => {}
            Some(_) => return Err(ChallengeError::Syntax(p.i)),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips spaces and tabs; whether there were any.
    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i > start
    }

    /// Skips the empty list elements `#rule` allows (`, ,`).
    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A token68 (`abc==`) standing alone, i.e. followed by the end or a comma;
    /// leaves the position unchanged when what follows is a parameter list.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        let mut j = self.i;
        while self
            .s
            .get(j)
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        {
            j += 1;
        }
        if j == start {
            return None;
        }
        while self.s.get(j) == Some(&b'=') {
            j += 1;
        }
        let mut k = j;
        while matches!(self.s.get(k), Some(b' ' | b'\t')) {
            k += 1;
        }
        if k < self.s.len() && self.s[k] != b',' {
            return None;
        }
        self.i = j;
        Some(String::from_utf8_lossy(&self.s[start..j]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, ChallengeError> {
        // The opening quote.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeError::Unterminated),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    let Some(&c) = self.s.get(self.i + 1) else {
                        return Err(ChallengeError::Unterminated);
                    };
                    out.push(c);
                    self.i += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// `name = value` pairs up to the start of the next challenge (a token not
    /// followed by `=`) or the end.
    fn params(&mut self, c: &mut Challenge) -> Result<(), ChallengeError> {
        loop {
            let mark = self.i;
            let Some(name) = self.token() else {
                return Err(ChallengeError::Syntax(self.i));
            };
            self.skip_ws();
            if self.peek() != Some(b'=') {
                // The next challenge's scheme: hand it back to the caller.
                self.i = mark;
                return if c.params.is_empty() {
                    Err(ChallengeError::Syntax(mark))
                } else {
                    Ok(())
                };
            }
            self.i += 1;
            self.skip_ws();
            let value = match self.peek() {
                Some(b'"') => self.quoted()?,
                _ => self.token().ok_or(ChallengeError::Syntax(self.i))?,
            };
            let name = name.to_ascii_lowercase();
            // Two realms in one challenge are ambiguous; refuse rather than pick one.
            if c.params.iter().any(|(k, _)| *k == name) {
                return Err(ChallengeError::Duplicate(name));
            }
            c.params.push((name, value));
            self.skip_ws();
            if self.peek() != Some(b',') {
                return Ok(());
            }
            // Past the comma: another parameter, or the next challenge.
            let comma = self.i;
            self.skip_list_separators();
            if self.done() {
                return Ok(());
            }
            let after = self.i;
            let is_param = self.token().is_some() && {
                self.skip_ws();
                self.peek() == Some(b'=')
            };
            self.i = if is_param { after } else { comma };
            if !is_param {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str) -> Challenge {
        let mut v = parse(h).unwrap();
        assert_eq!(v.len(), 1, "{h}: {v:?}");
        v.remove(0)
    }

    #[test]
    fn basic_and_bearer() {
        let c = one(r#"Basic realm="berth""#);
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("berth"));

        let c = one(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/m:pull,push repository:other:pull""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c.param("service"), Some("registry.example.com"));
        assert_eq!(
            c.param("scope"),
            Some("repository:team/m:pull,push repository:other:pull")
        );
    }

    #[test]
    fn case_spaces_tokens_and_escapes() {
        let c = one(r#"BEARER Realm = "a\"b\\c" , Service=svc,error=insufficient_scope"#);
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some(r#"a"b\c"#));
        assert_eq!(c.param("service"), Some("svc"));
        assert_eq!(c.param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let v = parse(r#"Basic realm="x", Bearer realm="https://t/token",service="s", Negotiate"#)
            .unwrap();
        let schemes: Vec<_> = v.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "negotiate"]);
        assert_eq!(v[1].param("service"), Some("s"));
        assert!(v[2].params.is_empty());

        let v = parse("Negotiate abc==, Basic realm=r").unwrap();
        assert_eq!(v[0].params, [(String::new(), "abc==".to_string())]);
        assert_eq!(v[1].param("realm"), Some("r"));
    }

    #[test]
    fn hostile_headers_are_refused_not_misread() {
        assert_eq!(
            parse(r#"Bearer realm="https://t/token"#),
            Err(ChallengeError::Unterminated)
        );
        assert_eq!(
            parse(r#"Bearer realm="x\"#),
            Err(ChallengeError::Unterminated)
        );
        assert_eq!(
            parse(r#"Bearer realm="https://good/",realm="https://evil/""#),
            Err(ChallengeError::Duplicate("realm".into()))
        );
        assert_eq!(
            parse(r#"Bearer realm="a", REALM="b""#),
            Err(ChallengeError::Duplicate("realm".into()))
        );
        let huge = format!(r#"Bearer realm="{}""#, "a".repeat(MAX_HEADER));
        assert_eq!(parse(&huge), Err(ChallengeError::TooLong));
        // Grammatically a token68, not an empty realm: no realm is read from it.
        assert_eq!(one("Bearer realm=").param("realm"), None);
        assert!(parse(r#"Bearer ="x""#).is_err());
        assert!(parse(r#""quoted" realm=x"#).is_err());
        assert!(parse("Bearer realm=a b=c").is_err());
        // Non-ASCII and control bytes do not panic.
        let _ = parse("Bearer realm=\u{e9}\u{0}");
        let _ = parse("\u{1F600}");
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse(" , ,").unwrap(), []);
    }

    #[test]
    fn a_long_valid_header_parses_in_linear_time() {
        let params: Vec<String> = (0..1000).map(|i| format!("p{i}=v")).collect();
        let c = one(&format!("Bearer {}", params.join(",")));
        assert_eq!(c.params.len(), 1000);
    }
}
