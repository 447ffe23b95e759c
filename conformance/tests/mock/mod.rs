//! An in-memory registry that follows the distribution spec, written only to
//! show that every check of the suite can pass, and that known defects are
//! caught. `Quirks` switch individual defects on.

mod http;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use http::{Request, Response, read_request, write_response};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Defects the mock can imitate.
#[derive(Clone, Copy, Default)]
pub struct Quirks {
    /// Accept PATCH chunks whatever their Content-Range (like distribution 2.8).
    pub ignore_content_range: bool,
    /// No referrers API: 404 on `/referrers/` (like distribution 2.8).
    pub no_referrers: bool,
    /// Ignore `n` and `last` on the tag list.
    pub ignore_tag_pagination: bool,
}

#[derive(Default)]
struct State {
    blobs: HashMap<(String, String), Vec<u8>>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    tags: HashMap<String, BTreeMap<String, String>>,
    next_id: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn digest_of(alg: &str, data: &[u8]) -> Option<String> {
    match alg {
        "sha256" => Some(format!("sha256:{}", hex(Sha256::digest(data).as_slice()))),
        "sha512" => Some(format!("sha512:{}", hex(Sha512::digest(data).as_slice()))),
        _ => None,
    }
}

fn valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some(("sha256", h)) => h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()),
        Some(("sha512", h)) => h.len() == 128 && h.bytes().all(|c| c.is_ascii_hexdigit()),
        _ => false,
    }
}

fn valid_name(name: &str) -> bool {
    let component = |s: &str| {
        let mut prev_alnum = false;
        let mut sep = String::new();
        for c in s.chars() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
                    return false;
                }
                sep.clear();
                prev_alnum = true;
            } else {
                if !prev_alnum && sep.is_empty() {
                    return false;
                }
                sep.push(c);
            }
        }
        prev_alnum && sep.is_empty()
    };
    name.len() <= 255 && !name.is_empty() && name.split('/').all(component)
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// Starts the mock on a free loopback port; returns its base URL.
pub fn start(quirks: Quirks) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Mutex::new(State::default()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = state.clone();
            std::thread::spawn(move || {
                if let Some(req) = read_request(&stream) {
                    let head = req.method == "HEAD";
                    let resp = {
                        let mut st = state.lock().unwrap();
                        handle(&mut st, quirks, &req)
                    };
                    write_response(&stream, head, resp);
                }
            });
        }
    });
    format!("http://{addr}")
}

fn handle(st: &mut State, q: Quirks, req: &Request) -> Response {
    let path = req.path.as_str();
    if path == "/v2/" || path == "/v2" {
        return Response::new(200).json(&json!({}));
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Response::new(404);
    };
    for marker in [
        "/blobs/uploads/",
        "/blobs/",
        "/manifests/",
        "/tags/list",
        "/referrers/",
    ] {
        if let Some(i) = rest.rfind(marker) {
            let (name, tail) = (&rest[..i], &rest[i + marker.len()..]);
            if !valid_name(name) {
                return Response::error(400, "NAME_INVALID");
            }
            return match marker {
                "/blobs/uploads/" => uploads(st, q, req, name, tail),
                "/blobs/" => blobs(st, req, name, tail),
                "/manifests/" => manifests(st, q, req, name, tail),
                "/tags/list" => tags(st, q, req, name),
                _ => referrers(st, q, req, name, tail),
            };
        }
    }
    Response::new(404)
}

fn uploads(st: &mut State, q: Quirks, req: &Request, name: &str, id: &str) -> Response {
    let location = |id: &str| format!("/v2/{name}/blobs/uploads/{id}");
    let progress = |id: &str, len: usize, status: u16| {
        Response::new(status)
            .header("Location", location(id))
            .header("Range", format!("0-{}", len as i64 - 1))
    };
    if id.is_empty() {
        if req.method != "POST" {
            return Response::error(405, "UNSUPPORTED");
        }
        if let (Some(d), Some(from)) = (req.q("mount"), req.q("from"))
            && let Some(data) = st.blobs.get(&(from.to_string(), d.to_string())).cloned()
        {
            st.blobs.insert((name.to_string(), d.to_string()), data);
            return Response::new(201).header("Location", format!("/v2/{name}/blobs/{d}"));
        }
        if let Some(d) = req.q("digest") {
            return finish(st, name, d, req.body.clone());
        }
        st.next_id += 1;
        let id = format!("0000aaaa-0000-4000-a000-{:012x}", st.next_id);
        st.uploads
            .insert(id.clone(), (name.to_string(), Vec::new()));
        return progress(&id, 0, 202);
    }
    let Some((repo, data)) = st.uploads.get_mut(id) else {
        return Response::error(404, "BLOB_UPLOAD_UNKNOWN");
    };
    if repo != name {
        return Response::error(404, "BLOB_UPLOAD_UNKNOWN");
    }
    match req.method.as_str() {
        "GET" => progress(id, data.len(), 204),
        "DELETE" => {
            st.uploads.remove(id);
            Response::new(204)
        }
        "PATCH" => {
            if !q.ignore_content_range
                && let Some(range) = req.header("content-range")
            {
                let start = range
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok());
                if start != Some(data.len()) {
                    return progress(id, data.len(), 416);
                }
            }
            data.extend_from_slice(&req.body);
            let len = data.len();
            progress(id, len, 202)
        }
        "PUT" => {
            let Some(d) = req.q("digest").map(str::to_string) else {
                return Response::error(400, "DIGEST_INVALID");
            };
            let (_, mut data) = st.uploads.remove(id).unwrap_or_default();
            data.extend_from_slice(&req.body);
            finish(st, name, &d, data)
        }
        _ => Response::error(405, "UNSUPPORTED"),
    }
}

fn finish(st: &mut State, name: &str, d: &str, data: Vec<u8>) -> Response {
    let alg = d.split(':').next().unwrap_or("");
    if !valid_digest(d) || digest_of(alg, &data).as_deref() != Some(d) {
        return Response::error(400, "DIGEST_INVALID");
    }
    st.blobs.insert((name.to_string(), d.to_string()), data);
    Response::new(201)
        .header("Location", format!("/v2/{name}/blobs/{d}"))
        .header("Docker-Content-Digest", d)
}

fn blobs(st: &mut State, req: &Request, name: &str, d: &str) -> Response {
    if !valid_digest(d) {
        return Response::error(400, "DIGEST_INVALID");
    }
    let key = (name.to_string(), d.to_string());
    if req.method == "DELETE" {
        return match st.blobs.remove(&key) {
            Some(_) => Response::new(202),
            None => Response::error(404, "BLOB_UNKNOWN"),
        };
    }
    let Some(data) = st.blobs.get(&key) else {
        return Response::error(404, "BLOB_UNKNOWN");
    };
    let resp = Response::new(200).header("Docker-Content-Digest", d);
    if let Some(range) = req.header("range").and_then(|r| r.strip_prefix("bytes="))
        && let Some((a, b)) = range.split_once('-')
        && let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>())
        && a <= b
        && b < data.len()
    {
        let mut r = resp.body("application/octet-stream", data[a..=b].to_vec());
        r.status = 206;
        return r.header("Content-Range", format!("bytes {a}-{b}/{}", data.len()));
    }
    resp.body("application/octet-stream", data.clone())
}

fn resolve(st: &State, name: &str, reference: &str) -> Option<String> {
    if reference.contains(':') {
        Some(reference.to_string())
    } else {
        st.tags.get(name)?.get(reference).cloned()
    }
}

fn manifests(st: &mut State, _q: Quirks, req: &Request, name: &str, reference: &str) -> Response {
    let is_digest = reference.contains(':');
    if !is_digest && !valid_tag(reference) && req.method != "PUT" {
        return Response::error(404, "MANIFEST_UNKNOWN");
    }
    if (is_digest && !valid_digest(reference)) || (!is_digest && !valid_tag(reference)) {
        return Response::error(
            400,
            if is_digest {
                "DIGEST_INVALID"
            } else {
                "TAG_INVALID"
            },
        );
    }
    match req.method.as_str() {
        "PUT" => put_manifest(st, req, name, reference),
        "DELETE" if !is_digest => match st.tags.get_mut(name).and_then(|t| t.remove(reference)) {
            Some(_) => Response::new(202),
            None => Response::error(404, "MANIFEST_UNKNOWN"),
        },
        "DELETE" => {
            if st
                .manifests
                .remove(&(name.to_string(), reference.to_string()))
                .is_none()
            {
                return Response::error(404, "MANIFEST_UNKNOWN");
            }
            if let Some(t) = st.tags.get_mut(name) {
                t.retain(|_, d| d != reference);
            }
            Response::new(202)
        }
        _ => {
            let found = resolve(st, name, reference).and_then(|d| {
                st.manifests
                    .get(&(name.to_string(), d.clone()))
                    .map(|m| (d, m))
            });
            let Some((d, (media_type, body))) = found else {
                return Response::error(404, "MANIFEST_UNKNOWN");
            };
            Response::new(200)
                .header("Docker-Content-Digest", d)
                .body(media_type, body.clone())
        }
    }
}

fn put_manifest(st: &mut State, req: &Request, name: &str, reference: &str) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
        return Response::error(400, "MANIFEST_INVALID");
    };
    if v.get("schemaVersion") != Some(&json!(2)) {
        return Response::error(400, "MANIFEST_INVALID");
    }
    let mut refs = Vec::new();
    if let Some(c) = v.get("config") {
        match c.get("digest").and_then(Value::as_str) {
            Some(d) => refs.push((d.to_string(), false)),
            None => return Response::error(400, "MANIFEST_INVALID"),
        }
    }
    for key in ["layers", "manifests"] {
        for d in v.get(key).and_then(Value::as_array).into_iter().flatten() {
            let Some(d) = d.get("digest").and_then(Value::as_str) else {
                return Response::error(400, "MANIFEST_INVALID");
            };
            refs.push((d.to_string(), key == "manifests"));
        }
    }
    for (d, is_manifest) in refs {
        let key = (name.to_string(), d);
        let known = if is_manifest {
            st.manifests.contains_key(&key)
        } else {
            st.blobs.contains_key(&key)
        };
        if !known {
            return Response::error(400, "MANIFEST_BLOB_UNKNOWN");
        }
    }
    let d = if reference.contains(':') {
        let alg = reference.split(':').next().unwrap_or("");
        if digest_of(alg, &req.body).as_deref() != Some(reference) {
            return Response::error(400, "DIGEST_INVALID");
        }
        reference.to_string()
    } else {
        digest_of("sha256", &req.body).unwrap_or_default()
    };
    let media_type = req
        .header("content-type")
        .unwrap_or("application/octet-stream");
    st.manifests.insert(
        (name.to_string(), d.clone()),
        (media_type.to_string(), req.body.clone()),
    );
    if !reference.contains(':') {
        st.tags
            .entry(name.to_string())
            .or_default()
            .insert(reference.to_string(), d.clone());
    }
    let mut resp = Response::new(201)
        .header("Location", format!("/v2/{name}/manifests/{d}"))
        .header("Docker-Content-Digest", d);
    if let Some(s) = v.pointer("/subject/digest").and_then(Value::as_str) {
        resp = resp.header("OCI-Subject", s);
    }
    resp
}

fn tags(st: &State, q: Quirks, req: &Request, name: &str) -> Response {
    let Some(all) = st.tags.get(name) else {
        return Response::error(404, "NAME_UNKNOWN");
    };
    let mut list: Vec<&String> = all.keys().collect();
    if !q.ignore_tag_pagination {
        if let Some(last) = req.q("last") {
            list.retain(|t| t.as_str() > last);
        }
        if let Some(n) = req.q("n").and_then(|n| n.parse::<usize>().ok()) {
            let more = list.len() > n;
            list.truncate(n);
            if more && n > 0 {
                let last = list.last().map(|s| s.as_str()).unwrap_or("");
                let resp = Response::new(200).json(&json!({ "name": name, "tags": list }));
                return resp.header(
                    "Link",
                    format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""),
                );
            }
        }
    }
    Response::new(200).json(&json!({ "name": name, "tags": list }))
}

fn referrers(st: &State, q: Quirks, req: &Request, name: &str, subject: &str) -> Response {
    if q.no_referrers {
        return Response::new(404);
    }
    if !valid_digest(subject) {
        return Response::error(400, "DIGEST_INVALID");
    }
    let filter = req.q("artifactType");
    let mut list = Vec::new();
    for ((repo, d), (media_type, body)) in &st.manifests {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        if repo != name || v.pointer("/subject/digest").and_then(Value::as_str) != Some(subject) {
            continue;
        }
        let artifact_type = v.get("artifactType").and_then(Value::as_str).or_else(|| {
            (media_type != INDEX)
                .then(|| v.pointer("/config/mediaType")?.as_str())
                .flatten()
        });
        if filter.is_some() && artifact_type != filter {
            continue;
        }
        let mut desc = json!({ "mediaType": media_type, "digest": d, "size": body.len() });
        if let Some(t) = artifact_type {
            desc["artifactType"] = json!(t);
        }
        if let Some(a) = v.get("annotations") {
            desc["annotations"] = a.clone();
        }
        list.push(desc);
    }
    let resp = Response::new(200).body(
        INDEX,
        json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": list })
            .to_string()
            .into_bytes(),
    );
    if filter.is_some() {
        resp.header("OCI-Filters-Applied", "artifactType")
    } else {
        resp
    }
}
