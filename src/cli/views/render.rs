//! Renders model-API JSON as readable text.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::table::{Table, delta, field, items, list, number, short_digest, size, text};

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Keys of the object `key` across all `values`, sorted.
fn keys_of(values: &[Value], key: &str) -> BTreeSet<String> {
    values
        .iter()
        .filter_map(|v| v.get(key).and_then(Value::as_object))
        .flat_map(|o| o.keys().cloned())
        .collect()
}

fn more(page: &Value, out: &mut String) {
    if let Some(c) = page.get("next_cursor").and_then(Value::as_str) {
        let _ = writeln!(out, "(more: --cursor {c})");
    }
}

/// `berth models`
pub fn models(page: &Value) -> String {
    let mut t = Table::new(["NAME", "VERSIONS", "LATEST", "TAGS", "CREATED", "SIZE"]);
    for m in items(page) {
        let latest = m.get("latest").unwrap_or(&Value::Null);
        t.row(vec![
            field(m, "name"),
            u64_of(m, "versions").to_string(),
            short_digest(&field(latest, "digest")),
            list(latest.get("tags").unwrap_or(&Value::Null)),
            field(latest, "created"),
            size(u64_of(m, "total_size")),
        ]);
    }
    let mut out = t.render();
    more(page, &mut out);
    out
}

/// `berth versions`: one row per version, a column per metric and per parameter in `params`.
pub fn versions(page: &Value, params: &[String]) -> String {
    let rows = items(page);
    let metrics = keys_of(rows, "metrics");
    let mut header: Vec<String> = ["DIGEST", "TAGS", "CREATED", "SIZE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(metrics.iter().cloned());
    header.extend(params.iter().cloned());
    let mut t = Table::new(header);
    for v in rows {
        let mut row = vec![
            short_digest(&field(v, "digest")),
            list(v.get("tags").unwrap_or(&Value::Null)),
            field(v, "created"),
            size(u64_of(v, "total_size")),
        ];
        let pick =
            |obj: &str, k: &str| text(v.get(obj).and_then(|o| o.get(k)).unwrap_or(&Value::Null));
        row.extend(metrics.iter().map(|m| pick("metrics", m)));
        row.extend(params.iter().map(|p| pick("params", p)));
        t.row(row);
    }
    let mut out = t.render();
    more(page, &mut out);
    out
}

fn key_values(title: &str, obj: Option<&Value>, out: &mut String) {
    let Some(o) = obj.and_then(Value::as_object).filter(|o| !o.is_empty()) else {
        return;
    };
    let _ = writeln!(out, "\n{title}:");
    let mut t = Table::new(Vec::<String>::new());
    for (k, v) in o {
        t.row(vec![format!("  {k}"), text(v)]);
    }
    out.push_str(t.render().trim_start_matches('\n'));
}

/// `berth show`
pub fn show(v: &Value) -> String {
    let d = v.get("descriptor").unwrap_or(&Value::Null);
    let mut head = Table::new(Vec::<String>::new());
    for (k, val) in [
        ("Name", field(v, "name")),
        ("Digest", field(v, "digest")),
        ("Media type", field(d, "mediaType")),
        ("Artifact type", field(d, "artifactType")),
        ("Kind", field(v, "kind")),
        ("Created", field(v, "created")),
        ("Description", field(v, "description")),
        ("Tags", list(v.get("tags").unwrap_or(&Value::Null))),
        ("Size", size(u64_of(v, "total_size"))),
    ] {
        head.row(vec![format!("{k}:"), val]);
    }
    let mut out = head.render().trim_start_matches('\n').to_string();
    key_values("Model", v.get("model"), &mut out);
    key_values("Lineage", v.get("lineage"), &mut out);
    key_values("Metrics", v.get("metrics"), &mut out);
    key_values("Parameters", v.get("params"), &mut out);
    key_values("Labels", v.get("labels"), &mut out);
    let layers = v.get("layers").and_then(Value::as_array);
    if let Some(layers) = layers.filter(|l| !l.is_empty()) {
        let _ = writeln!(out, "\nLayers:");
        let mut t = Table::new(["  PATH", "KIND", "SIZE", "DIGEST", "MEDIA TYPE"]);
        for l in layers {
            t.row(vec![
                format!("  {}", field(l, "path")),
                field(l, "kind"),
                size(u64_of(l, "size")),
                short_digest(&field(l, "digest")),
                field(l, "media_type"),
            ]);
        }
        out.push_str(&t.render());
    }
    let groups = v.get("referrers").and_then(Value::as_object);
    if let Some(groups) = groups.filter(|g| !g.is_empty()) {
        let _ = writeln!(out, "\nReferrers:");
        let mut t = Table::new(["  ARTIFACT TYPE", "DIGEST", "SIZE"]);
        for (kind, descs) in groups {
            for r in descs.as_array().map(Vec::as_slice).unwrap_or_default() {
                t.row(vec![
                    format!("  {kind}"),
                    short_digest(&field(r, "digest")),
                    size(u64_of(r, "size")),
                ]);
            }
        }
        out.push_str(&t.render());
        if let Some(next) = v.get("referrers_next").and_then(Value::as_str) {
            let _ = writeln!(out, "  … more referrers: {next}");
        }
    }
    out
}

/// `berth compare`: one column per version; the first is the baseline.
pub fn compare(v: &Value) -> String {
    let versions = v
        .get("versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut header = vec![String::new()];
    header.extend(versions.iter().enumerate().map(|(i, c)| {
        let r = field(c, "reference");
        if i == 0 { format!("{r} (baseline)") } else { r }
    }));
    let mut t = Table::new(header);
    let mut row = |label: &str, f: &dyn Fn(usize, &Value) -> String| {
        let mut cells = vec![label.to_string()];
        cells.extend(versions.iter().enumerate().map(|(i, c)| f(i, c)));
        t.row(cells);
    };
    row("digest", &|_, c| short_digest(&field(c, "digest")));
    row("created", &|_, c| field(c, "created"));
    row("tags", &|_, c| list(c.get("tags").unwrap_or(&Value::Null)));
    row("size", &|_, c| size(u64_of(c, "total_size")));
    for m in keys_of(versions, "metrics") {
        row(&format!("metrics.{m}"), &|i, c| {
            let value = c
                .get("metrics")
                .and_then(|o| o.get(&m))
                .and_then(Value::as_f64);
            let d = c
                .get("metric_deltas")
                .and_then(|o| o.get(&m))
                .and_then(Value::as_f64);
            match (value, d) {
                (None, _) => "-".into(),
                (Some(x), Some(d)) if i > 0 => format!("{} ({})", number(x), delta(d)),
                (Some(x), _) => number(x),
            }
        });
    }
    for (group, prefix) in [
        ("param_differences", "params"),
        ("lineage_differences", "lineage"),
    ] {
        if let Some(diffs) = v.get(group).and_then(Value::as_object) {
            for (k, values) in diffs {
                row(&format!("{prefix}.{k} *"), &|i, _| {
                    text(values.get(i).unwrap_or(&Value::Null))
                });
            }
        }
    }
    row("layers shared", &|_, c| match c.get("layers") {
        Some(l) if !l.is_null() => format!(
            "{} ({})",
            u64_of(l, "shared_layers"),
            size(u64_of(l, "shared_bytes"))
        ),
        _ => "-".into(),
    });
    row("layers new", &|_, c| match c.get("layers") {
        Some(l) if !l.is_null() => {
            format!(
                "{} ({})",
                u64_of(l, "new_layers"),
                size(u64_of(l, "new_bytes"))
            )
        }
        _ => "-".into(),
    });
    let mut out = t.render();
    out.push_str("(* differs between versions; deltas are against the baseline)\n");
    out
}
