//! Filtering, sorting and paging model versions: the `?filter=`, `?sort=` and
//! `?cursor=` grammar of the model API, and its evaluation. Pure.
//!
//! - filter: `KEY OP VALUE` with OP one of `>=`, `<=`, `>`, `<`, `=`, `!=` and KEY one
//!   of `created` (RFC 3339 value), `size` (bytes), `metrics.<name>` (numeric),
//!   `params.<name>` (numeric when both sides are numbers, else text), `tag`
//!   (`=`/`!=` only) or `label.<key>` (a version label, compared like a
//!   parameter). A version without the metric, parameter or label never matches.
//! - sort: `[-]KEY` with KEY one of `created`, `size`, `metrics.<name>`,
//!   `params.<name>`; `-` is descending. Versions without the key come last in
//!   either direction; ties are broken by digest.
//! - cursor: opaque; it names the sort it belongs to and the position (sort value
//!   and digest) of the last item returned, so paging is stable under inserts.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::index::{parse_metric, parse_time_ms};
use crate::store::model::ModelRecord;

/// At most this many filters in one query.
pub const MAX_FILTERS: usize = 32;
/// Longest filter, sort or cursor text accepted.
pub const MAX_EXPR_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid filter {0:?}: {1}")]
    Filter(String, String),
    #[error("invalid sort {0:?}: {1}")]
    Sort(String, String),
    #[error("too many filters (at most {MAX_FILTERS})")]
    TooManyFilters,
    #[error("invalid cursor: {0}")]
    Cursor(&'static str),
}

/// What a filter or sort looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Created,
    Size,
    Metric(String),
    Param(String),
    /// Filters only.
    Tag,
    /// A version label; filters only.
    Label(String),
}

impl Field {
    fn parse(key: &str) -> Result<Field, String> {
        let named = |prefix: &str| -> Option<Result<String, String>> {
            key.strip_prefix(prefix).map(|n| {
                if n.is_empty() {
                    Err(format!("{prefix}<name> needs a name"))
                } else {
                    Ok(n.to_string())
                }
            })
        };
        match key {
            "created" => Ok(Field::Created),
            "size" => Ok(Field::Size),
            "tag" => Ok(Field::Tag),
            _ => match (named("metrics."), named("params."), named("label.")) {
                (Some(n), _, _) => n.map(Field::Metric),
                (_, Some(n), _) => n.map(Field::Param),
                (_, _, Some(n)) => n.map(Field::Label),
                _ => Err(format!(
                    "unknown key {key:?} (use created, size, tag, metrics.<name>, params.<name> or label.<key>)"
                )),
            },
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Created => f.write_str("created"),
            Field::Size => f.write_str("size"),
            Field::Tag => f.write_str("tag"),
            Field::Metric(n) => write!(f, "metrics.{n}"),
            Field::Param(n) => write!(f, "params.{n}"),
            Field::Label(n) => write!(f, "label.{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Le,
    Gt,
    Lt,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Ge => o != Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Gt => o == Ordering::Greater,
            Op::Lt => o == Ordering::Less,
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
        }
    }
}

/// The value a filter compares with, parsed for its field.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Number(f64),
    Text(String),
}

/// One `KEY OP VALUE` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    field: Field,
    op: Op,
    value: Operand,
}

impl FromStr for Filter {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Filter, QueryError> {
        let bad = |why: &str| QueryError::Filter(truncate(s), why.to_string());
        if s.len() > MAX_EXPR_LEN {
            return Err(bad("too long"));
        }
        let pos = s
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| bad("expected KEY OP VALUE with OP one of >=, <=, >, <, =, !="))?;
        let (key, rest) = s.split_at(pos);
        let (op, value) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ]
        .iter()
        .find_map(|(t, op)| rest.strip_prefix(t).map(|v| (*op, v)))
        .ok_or_else(|| bad("unknown operator (use >=, <=, >, <, =, !=)"))?;
        if key.is_empty() {
            return Err(bad("missing key"));
        }
        if value.is_empty() {
            return Err(bad("missing value"));
        }
        let field = Field::parse(key).map_err(|e| bad(&e))?;
        let value = match &field {
            Field::Created => Operand::Number(
                parse_time_ms(value).ok_or_else(|| bad("created needs an RFC 3339 time"))? as f64,
            ),
            Field::Size | Field::Metric(_) => {
                Operand::Number(parse_metric(value).ok_or_else(|| bad("value is not a number"))?)
            }
            Field::Tag if !matches!(op, Op::Eq | Op::Ne) => {
                return Err(bad("tag supports only = and !="));
            }
            Field::Tag | Field::Param(_) | Field::Label(_) => Operand::Text(value.to_string()),
        };
        Ok(Filter { field, op, value })
    }
}

/// Numeric order for filters, where -0 equals 0 (a total order would put it below).
fn num_cmp(a: f64, b: f64) -> Ordering {
    // Adding +0 turns -0 into +0 and leaves every other value as it is.
    (a + 0.0).total_cmp(&(b + 0.0))
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Compares parameter texts: numerically when both are numbers, numbers before text,
/// text lexically.
fn cmp_text(a: &str, b: &str) -> Ordering {
    match (parse_metric(a), parse_metric(b)) {
        (Some(x), Some(y)) => num_cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

impl Filter {
    /// Whether version `v` (with its tags and labels) passes.
    pub fn matches(&self, v: &Tagged) -> bool {
        let text =
            |found: Option<&String>, t: &str| found.is_some_and(|p| self.op.holds(cmp_text(p, t)));
        match (&self.field, &self.value) {
            (Field::Tag, Operand::Text(t)) => (self.op == Op::Eq) == v.tags.contains(t),
            (Field::Param(k), Operand::Text(t)) => text(v.record.params.get(k), t),
            (Field::Label(k), Operand::Text(t)) => text(v.labels.get(k), t),
            (field, Operand::Number(n)) => sort_key(field, &v.record).is_some_and(|k| match k {
                Key::Num(x) => self.op.holds(num_cmp(x, *n)),
                Key::Text(_) => false,
            }),
            _ => false,
        }
    }
}

/// A sort order: a field and a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub field: Field,
    pub descending: bool,
}

impl Default for Sort {
    /// Newest first.
    fn default() -> Self {
        Sort {
            field: Field::Created,
            descending: true,
        }
    }
}

impl FromStr for Sort {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Sort, QueryError> {
        let bad = |why: String| QueryError::Sort(truncate(s), why);
        if s.len() > MAX_EXPR_LEN {
            return Err(bad("too long".into()));
        }
        let (descending, key) = match s.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let field = Field::parse(key).map_err(bad)?;
        if matches!(field, Field::Tag | Field::Label(_)) {
            return Err(bad(format!("cannot sort by {field}")));
        }
        Ok(Sort { field, descending })
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        write!(f, "{}", self.field)
    }
}

/// A sort value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    Num(f64),
    Text(String),
}

fn sort_key(field: &Field, v: &ModelRecord) -> Option<Key> {
    match field {
        Field::Created => Some(Key::Num(v.created_ms as f64)),
        Field::Size => Some(Key::Num(v.total_size as f64)),
        Field::Metric(k) => v.metrics.get(k).map(|m| Key::Num(*m)),
        Field::Param(k) => v.params.get(k).map(|p| Key::Text(p.clone())),
        Field::Tag | Field::Label(_) => None,
    }
}

fn cmp_key(a: &Key, b: &Key) -> Ordering {
    match (a, b) {
        (Key::Num(x), Key::Num(y)) => x.total_cmp(y),
        (Key::Text(x), Key::Text(y)) => cmp_text(x, y),
        (Key::Num(_), Key::Text(_)) => Ordering::Less,
        (Key::Text(_), Key::Num(_)) => Ordering::Greater,
    }
}

impl Sort {
    /// The total order: by key in the sort's direction, missing keys last, then digest.
    fn cmp(&self, a: (&Option<Key>, &str), b: (&Option<Key>, &str)) -> Ordering {
        let by_key = match (a.0, b.0) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) if self.descending => cmp_key(y, x),
            (Some(x), Some(y)) => cmp_key(x, y),
        };
        by_key.then_with(|| a.1.cmp(b.1))
    }
}

/// The position after which a page of versions starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort the cursor belongs to.
    s: String,
    /// Sort value of the last item returned.
    k: Option<Key>,
    /// Digest of the last item returned.
    d: String,
}

/// Encodes a value as an opaque cursor token.
pub fn encode_token<T: Serialize>(v: &T) -> String {
    hex::encode(serde_json::to_vec(v).unwrap_or_default())
}

/// Decodes a token made by `encode_token`; anything else is an error.
pub fn decode_token<T: serde::de::DeserializeOwned>(token: &str) -> Result<T, QueryError> {
    if token.len() > 2 * MAX_EXPR_LEN {
        return Err(QueryError::Cursor("too long"));
    }
    let bytes = hex::decode(token).map_err(|_| QueryError::Cursor("malformed"))?;
    serde_json::from_slice(&bytes).map_err(|_| QueryError::Cursor("malformed"))
}

/// A version with the tags pointing at it and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    pub record: ModelRecord,
    pub tags: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A parsed versions query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionQuery {
    pub filters: Vec<Filter>,
    pub sort: Sort,
}

impl VersionQuery {
    /// Parses `filter` and `sort` expressions.
    pub fn parse<'a>(
        filters: impl IntoIterator<Item = &'a str>,
        sort: Option<&str>,
    ) -> Result<VersionQuery, QueryError> {
        let filters = filters
            .into_iter()
            .map(str::parse)
            .collect::<Result<Vec<Filter>, _>>()?;
        if filters.len() > MAX_FILTERS {
            return Err(QueryError::TooManyFilters);
        }
        let sort = sort.map(str::parse).transpose()?.unwrap_or_default();
        Ok(VersionQuery { filters, sort })
    }

    /// Decodes a cursor token, checking that it belongs to this query's sort.
    pub fn cursor(&self, token: &str) -> Result<Cursor, QueryError> {
        let c: Cursor = decode_token(token)?;
        if c.s != self.sort.to_string() {
            return Err(QueryError::Cursor("it belongs to a different sort"));
        }
        Ok(c)
    }

    /// Filters, sorts and pages `versions` (each with its tags): the page after
    /// `after`, at most `limit` long, and the cursor of the next page if any.
    pub fn select(
        &self,
        versions: Vec<Tagged>,
        after: Option<&Cursor>,
        limit: usize,
    ) -> (Vec<Tagged>, Option<Cursor>) {
        let mut keyed: Vec<(Option<Key>, String, Tagged)> = versions
            .into_iter()
            .filter(|v| self.filters.iter().all(|f| f.matches(v)))
            .map(|v| {
                let k = sort_key(&self.sort.field, &v.record);
                (k, v.record.digest.to_string(), v)
            })
            .collect();
        keyed.sort_by(|a, b| self.sort.cmp((&a.0, &a.1), (&b.0, &b.1)));
        let start = match after {
            Some(c) => keyed.partition_point(|e| {
                self.sort.cmp((&e.0, &e.1), (&c.k, &c.d)) != Ordering::Greater
            }),
            None => 0,
        };
        let mut page: Vec<_> = keyed.into_iter().skip(start).take(limit + 1).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = match page.last() {
            Some((k, d, _)) if more => Some(Cursor {
                s: self.sort.to_string(),
                k: k.clone(),
                d: d.clone(),
            }),
            _ => None,
        };
        (page.into_iter().map(|(_, _, v)| v).collect(), next)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn version(seed: &str, created_ms: i64, auc: Option<f64>, lr: Option<&str>) -> Tagged {
        let mut r = crate::store::model::ModelRecord {
            digest: crate::oci::Digest::sha256_of(seed.as_bytes()),
            media_type: String::new(),
            size: 0,
            artifact_type: None,
            kind: "annotated".into(),
            created: String::new(),
            created_ms,
            description: None,
            lineage: Default::default(),
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
            model: Default::default(),
            config: None,
            layers: vec![],
            total_size: 0,
            annotations: BTreeMap::new(),
        };
        if let Some(a) = auc {
            r.metrics.insert("auc".into(), a);
        }
        if let Some(l) = lr {
            r.params.insert("lr".into(), l.into());
        }
        Tagged {
            record: r,
            tags: vec![seed.to_string()],
            labels: BTreeMap::from([("status".to_string(), seed.to_string())]),
        }
    }

    fn names(page: &[Tagged]) -> Vec<&str> {
        page.iter().map(|v| v.tags[0].as_str()).collect()
    }

    #[test]
    fn parses_and_rejects_expressions() {
        assert!("metrics.auc>=0.9".parse::<Filter>().is_ok());
        assert!("params.opt=adam".parse::<Filter>().is_ok());
        assert!("created<2024-01-01T00:00:00Z".parse::<Filter>().is_ok());
        assert!("label.validation=passed".parse::<Filter>().is_ok());
        for bad in [
            "",
            "auc",
            "metrics.auc",
            "metrics.auc=>1",
            "x=1",
            "metrics.=1",
            "size>big",
            "tag<a",
            "=1",
            "params.a=",
        ] {
            assert!(bad.parse::<Filter>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "-metrics.auc".parse::<Sort>().unwrap().to_string(),
            "-metrics.auc"
        );
        assert_eq!("+size".parse::<Sort>().unwrap().to_string(), "size");
        for bad in [
            "", "-", "tag", "name", "metrics.", "--size", "label.x", "label.",
        ] {
            assert!(bad.parse::<Sort>().is_err(), "{bad:?}");
        }
        assert!(decode_token::<Cursor>("zz").is_err());
        assert!(decode_token::<Cursor>(&hex::encode("[1]")).is_err());
    }

    /// -0 and 0 are the same number to a filter, for metrics and numeric params.
    #[test]
    fn negative_zero_equals_zero_in_filters() {
        let v = version("z", 1, Some(-0.0), Some("-0"));
        for f in [
            "metrics.auc=0",
            "metrics.auc>=0",
            "metrics.auc<=0",
            "params.lr=0",
            "params.lr>=0",
        ] {
            assert!(f.parse::<Filter>().unwrap().matches(&v), "{f}");
        }
        for f in ["metrics.auc<0", "metrics.auc>0", "params.lr<0"] {
            assert!(!f.parse::<Filter>().unwrap().matches(&v), "{f}");
        }
    }

    /// A metric stored and read back is the same double (serde_json's exact
    /// float parsing), so a cursor or an `=` filter built from it still matches.
    #[test]
    fn stored_floats_round_trip_exactly() {
        for x in [0.9123456789012345_f64, 1.0000000000000045e19, 0.1 + 0.2] {
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
        }
    }

    #[test]
    fn sorts_with_missing_keys_last_and_pages_stably() {
        let all = vec![
            version("a", 3, Some(0.5), Some("0.1")),
            version("b", 1, None, Some("adam")),
            version("c", 2, Some(0.9), Some("0.05")),
            version("d", 4, Some(0.5), None),
        ];
        let q = VersionQuery::parse([], Some("-metrics.auc")).unwrap();
        let (page, _) = q.select(all.clone(), None, 10);
        let mut ties = names(&page)[1..3].to_vec();
        ties.sort();
        assert_eq!(
            (names(&page)[0], ties, names(&page)[3]),
            ("c", vec!["a", "d"], "b")
        );
        let q = VersionQuery::parse([], Some("params.lr")).unwrap();
        assert_eq!(
            names(&q.select(all.clone(), None, 10).0),
            ["c", "a", "b", "d"]
        );

        // Page by page through the same order, with a version added between pages.
        let q = VersionQuery::parse(["metrics.auc>0"], Some("metrics.auc")).unwrap();
        let (p1, next) = q.select(all.clone(), None, 1);
        let token = encode_token(&next.unwrap());
        let mut more = all.clone();
        more.push(version("e", 9, Some(0.1), None));
        let (p2, end) = q.select(more, Some(&q.cursor(&token).unwrap()), 2);
        let mut seen = names(&p1);
        seen.extend(names(&p2));
        // "e" sorts before the cursor: not repeated, not reached; the rest follow once.
        seen[..2].sort();
        assert_eq!(seen, ["a", "d", "c"]);
        assert!(end.is_none());
        let other = VersionQuery::parse([], Some("size")).unwrap();
        assert!(other.cursor(&token).is_err());
    }

    #[test]
    fn labels_filter_like_parameters() {
        let all = vec![version("a", 1, None, None), version("b", 2, None, None)];
        let q = VersionQuery::parse(["label.status=b"], None).unwrap();
        assert_eq!(names(&q.select(all.clone(), None, 10).0), ["b"]);
        let q = VersionQuery::parse(["label.status!=b"], None).unwrap();
        assert_eq!(names(&q.select(all.clone(), None, 10).0), ["a"]);
        let q = VersionQuery::parse(["label.missing=b"], None).unwrap();
        assert!(q.select(all, None, 10).0.is_empty());
    }
}
