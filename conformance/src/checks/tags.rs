//! Content discovery, tag half: `GET /v2/<name>/tags/list` with `n`, `last`
//! and `Link` pagination.

use reqwest::Method;
use serde_json::Value;

use super::Env;
use crate::check::{Step, ensure, fail, need};
use crate::client::{Client, Resp};
use crate::fixtures::Image;
use crate::ops::{expect_code, next_link, push_image, push_manifest};
use crate::report::{Level::*, Recorder};

/// Tags pushed, deliberately not in lexical order.
const TAGS: [&str; 6] = ["gamma", "alpha", "epsilon", "beta", "zeta", "delta"];

/// One page of a tag listing.
struct Page {
    resp: Resp,
    name: Option<String>,
    tags: Vec<String>,
}

fn parse_page(resp: Resp) -> Step<Page> {
    resp.expect(&[200])?;
    let v: Value = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => return fail(format!("tag list is not JSON ({e}): {}", resp.describe())),
    };
    let name = v.get("name").and_then(Value::as_str).map(str::to_string);
    let tags = match v.get("tags") {
        // Go registries write an empty list as null; treat it as empty.
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut tags = Vec::new();
            for t in a {
                match t.as_str() {
                    Some(s) => tags.push(s.to_string()),
                    None => return fail(format!("tag list holds a non-string {t}")),
                }
            }
            tags
        }
        _ => {
            return fail(format!(
                "tag list has no \"tags\" array: {}",
                resp.describe()
            ));
        }
    };
    Ok(Page { resp, name, tags })
}

fn list(c: &Client, repo: &str, query: &str) -> Step<Page> {
    parse_page(c.get(&format!("/v2/{repo}/tags/list{query}"))?)
}

/// Checks a page answering `n=<n>` (and maybe `last`) against the expected
/// continuation `want`: exactly `n` results, unless fewer remain or the
/// registry gives a `Link` to the rest (then a non-empty prefix is fine).
fn check_limited(page: &Page, want: &[String], n: usize) -> Step {
    let expected: Vec<String> = want.iter().take(n).cloned().collect();
    if page.tags == expected {
        return Ok(());
    }
    let has_link = next_link(&page.resp).is_some();
    if has_link && !page.tags.is_empty() && expected.starts_with(&page.tags) {
        return Ok(());
    }
    fail(format!(
        "expected {expected:?}{}, got {:?}: {}",
        if has_link {
            " (or a prefix, given the Link)"
        } else {
            ""
        },
        page.tags,
        page.resp.request
    ))
}

pub(crate) fn run(env: &Env, r: &mut Recorder) {
    let c = env.c;
    let repo = env.repos.tags.as_str();
    let image = Image::new(env.run_id, "tags");
    let mut sorted: Vec<String> = TAGS.iter().map(|t| t.to_string()).collect();
    sorted.sort();

    let setup = r.setup("tags-setup", Must, || {
        push_image(c, repo, &image, TAGS[0])?;
        for tag in &TAGS[1..] {
            push_manifest(c, repo, tag, &image.manifest)?;
        }
        Ok(())
    });

    r.check("tags-list", Must, || {
        need(&setup)?;
        let page = list(c, repo, "")?;
        ensure!(
            page.name.as_deref() == Some(repo),
            "\"name\" is {:?}, expected {repo:?}",
            page.name
        );
        let mut got = page.tags.clone();
        got.sort();
        ensure!(
            got == sorted,
            "listed tags {:?} are not the pushed tags {sorted:?}",
            page.tags
        );
        Ok(())
    });
    r.check("tags-list-lexical-order", Must, || {
        need(&setup)?;
        let page = list(c, repo, "")?;
        let mut ordered = page.tags.clone();
        ordered.sort_by_key(|t| t.to_lowercase());
        ensure!(
            page.tags == ordered,
            "tags are not in lexical order: {:?}",
            page.tags
        );
        Ok(())
    });
    r.check("tags-list-n", Must, || {
        need(&setup)?;
        let page = list(c, repo, "?n=2")?;
        check_limited(&page, &sorted, 2)
    });
    r.check("tags-list-n-last", Must, || {
        need(&setup)?;
        let page = list(c, repo, &format!("?n=2&last={}", sorted[1]))?;
        check_limited(&page, &sorted[2..], 2)
    });
    r.check("tags-list-last", Must, || {
        need(&setup)?;
        let page = list(c, repo, &format!("?last={}", sorted[2]))?;
        check_limited(&page, &sorted[3..], sorted.len())
    });
    r.check("tags-list-n-zero", Must, || {
        need(&setup)?;
        let page = list(c, repo, "?n=0")?;
        ensure!(
            page.tags.is_empty(),
            "n=0 MUST return an empty list, got {:?}",
            page.tags
        );
        ensure!(
            page.resp.header("link").is_none(),
            "n=0 MUST NOT include a Link header, got {:?}",
            page.resp.header("link")
        );
        Ok(())
    });
    r.check("tags-list-paginate", Must, || {
        need(&setup)?;
        // Walk the list two at a time, following Link when given and using
        // `last` otherwise; the pages together must be the whole list.
        let mut seen: Vec<String> = Vec::new();
        let mut page = list(c, repo, "?n=2")?;
        for _ in 0..20 {
            ensure!(
                page.tags.len() <= 2,
                "n=2 returned {} tags: {:?}",
                page.tags.len(),
                page.tags
            );
            if page.tags.is_empty() {
                break;
            }
            seen.extend(page.tags.iter().cloned());
            page = match next_link(&page.resp) {
                Some(link) => parse_page(c.send(c.req_location(Method::GET, &link)?)?)?,
                None if page.resp.header("link").is_some() => {
                    return fail(format!(
                        "Link header {:?} is not of the form <url>; rel=\"next\" (RFC 5988)",
                        page.resp.header("link")
                    ));
                }
                None if page.tags.len() < 2 => break,
                None => {
                    let last = seen.last().cloned().unwrap_or_default();
                    list(c, repo, &format!("?n=2&last={last}"))?
                }
            };
        }
        ensure!(
            seen == sorted,
            "paging two at a time yielded {seen:?}, expected {sorted:?}"
        );
        Ok(())
    });
    r.check("tags-list-unknown-repository", Should, || {
        let resp = c.get(&format!("/v2/{}/tags/list", env.repos.absent))?;
        resp.expect(&[404])?;
        expect_code(&resp, &["NAME_UNKNOWN"])
    });
}
