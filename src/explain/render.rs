//! The two renderings of a [`Report`]: JSON (the default) and a self-contained HTML page.
//!
//! Both are written by hand, without a serialisation dependency. Every dynamic string goes
//! through [`json_string`] or [`html`]: header values are chosen by the client.

use std::fmt::Write as _;
use std::time::Duration;

use super::report::Report;
use crate::client_ip::{Explanation, Resolution, Step};

/// `text` as a JSON string literal, quotes included.
pub(super) fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // `<` too, so the JSON can be embedded in a page without closing a script element.
            character
                if character < ' '
                    || character == '<'
                    || character == '\u{2028}'
                    || character == '\u{2029}' =>
            {
                let _ = write!(out, "\\u{:04x}", u32::from(character));
            }
            character => out.push(character),
        }
    }
    out.push('"');
}

/// A small JSON object writer: `{"a":1,"b":"x"}`.
struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        json_string(self.out, key);
        self.out.push(':');
        self.out
    }

    fn string(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        json_string(out, value);
    }

    fn optional_string(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.string(key, value),
            None => self.key(key).push_str("null"),
        }
    }

    fn raw(&mut self, key: &str, value: impl std::fmt::Display) {
        let out = self.key(key);
        let _ = write!(out, "{value}");
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn outcome(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Resolved { .. } => "resolved",
        Resolution::Absent(_) => "absent",
        Resolution::Untrustworthy(_) => "untrustworthy",
    }
}

fn millis(duration: Duration) -> u128 {
    duration.as_millis()
}

/// The JSON body.
pub(super) fn json(report: &Report) -> String {
    let mut out = String::with_capacity(1024);
    let mut top = Object::open(&mut out);
    top.optional_string("peer", report.peer.map(|peer| peer.to_string()).as_deref());
    {
        let out = top.key("forwarding_headers");
        out.push('[');
        for (index, (name, value)) in report.forwarding.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let mut header = Object::open(out);
            header.string("name", name);
            header.string("value", value);
            header.close();
        }
        out.push(']');
    }
    {
        let out = top.key("sources");
        out.push('[');
        for (index, source) in report.sources().iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            source_json(
                out,
                source,
                report.is_decisive(index),
                report.is_after_decision(index),
            );
        }
        out.push(']');
    }
    {
        let out = top.key("result");
        match report.client {
            Some(client) => {
                let mut result = Object::open(out);
                result.string("ip", &client.ip().to_string());
                result.string("source", client.source().as_str());
                result.raw("fallback", client.is_fallback());
                result.close();
            }
            None => out.push_str("null"),
        }
    }
    if let Some(reason) = report.explanation.resolution().reason() {
        let mut unresolved = Object::open(top.key("unresolved"));
        unresolved.string("reason", reason.code());
        unresolved.string("why", &reason.to_string());
        unresolved.close();
    }
    let key = report.key.as_ref();
    top.optional_string("key", key.and_then(|key| key.key.as_deref()));
    {
        let out = top.key("bucket");
        match key.and_then(|key| key.bucket) {
            Some(bucket) => {
                let mut object = Object::open(out);
                object.raw("remaining", bucket.remaining());
                object.raw("burst", bucket.burst());
                object.raw("next_cell_after_ms", millis(bucket.next_cell_after()));
                object.raw("full_after_ms", millis(bucket.full_after()));
                object.close();
            }
            None => out.push_str("null"),
        }
    }
    top.close();
    out
}

fn source_json(out: &mut String, source: &Explanation, used: bool, not_reached: bool) {
    let resolution = source.resolution();
    let mut object = Object::open(out);
    object.string("source", source.name());
    object.string("outcome", outcome(resolution));
    object.raw("used", used);
    object.raw("reached", !not_reached);
    match resolution {
        Resolution::Resolved { ip, source: kind } => {
            object.string("ip", &ip.to_string());
            object.string("kind", kind.as_str());
        }
        Resolution::Absent(reason) | Resolution::Untrustworthy(reason) => {
            object.string("reason", reason.code());
            object.string("why", &reason.to_string());
        }
    }
    object.optional_string("trusted", source.trusted());
    let out = object.key("steps");
    out.push('[');
    for (index, step) in source.steps().iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let mut step_object = Object::open(out);
        match step {
            Step::Peer { ip, trusted } => {
                step_object.string("step", "peer");
                step_object.optional_string("ip", ip.map(|ip| ip.to_string()).as_deref());
                step_object.raw("trusted", trusted);
            }
            Step::Entry {
                position,
                text,
                verdict,
            } => {
                step_object.string("step", "entry");
                step_object.raw("position", position);
                step_object.string("value", text);
                step_object.string("verdict", verdict.code());
                step_object.string("why", &verdict.to_string());
            }
            Step::Header {
                name,
                text,
                verdict,
            } => {
                step_object.string("step", "header");
                step_object.string("name", name);
                step_object.string("value", text);
                step_object.string("verdict", verdict.code());
                step_object.string("why", &verdict.to_string());
            }
            Step::Note(text) => {
                step_object.string("step", "note");
                step_object.string("text", text);
            }
        }
        step_object.close();
    }
    out.push(']');
    object.close();
}

/// `text`, HTML-escaped, appended to `out`.
pub(super) fn html(out: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            character => out.push(character),
        }
    }
}

const STYLE: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d232b}\
main{max-width:1080px;margin:0 auto;padding:24px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}\
.warn{background:#fff4d6;border:1px solid #e6c767;padding:8px 12px;border-radius:6px;font-size:13px}\
.card{background:#fff;border:1px solid #d9dde3;border-radius:8px;padding:14px 18px;margin:10px 0}\
.result{display:flex;gap:40px;flex-wrap:wrap}.result div{min-width:160px}\
.label{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#5b6573}\
.big{font:600 26px ui-monospace,'SFMono-Regular',Menlo,monospace}\
code,td.v{font-family:ui-monospace,'SFMono-Regular',Menlo,monospace;word-break:break-all}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-top:1px solid #eceef1;vertical-align:top}\
th{font-size:12px;color:#5b6573;font-weight:600;border-top:0}\
.tag{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600}\
.resolved,.client{background:#dcf5e3;color:#17612f}.absent,.counted,.trusted_proxy,.replaced{background:#e8ebf0;color:#3c4550}\
.untrustworthy,.stopped{background:#fde0df;color:#8c1d18}.used{border-left:4px solid #2f7d4a}\
.muted{color:#5b6573;font-size:13px}.unreached{opacity:.6}";

/// The HTML page: no script, no external resource, every dynamic string escaped.
pub(super) fn page(report: &Report) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>tower-bouncer: explain</title><style>",
    );
    out.push_str(STYLE);
    out.push_str("</style></head><body><main><h1>How this server sees your request</h1>");
    out.push_str(
        "<p class=\"warn\">Diagnostics from tower-bouncer: this page shows your forwarding headers \
         and the server's trusted proxy configuration. Keep it behind authentication, or off, in \
         production.</p>",
    );

    // The answer first.
    out.push_str("<section class=\"card result\"><div><div class=\"label\">Client IP</div><div class=\"big\" id=\"client-ip\">");
    match report.client {
        Some(client) => html(&mut out, &client.ip().to_string()),
        None => out.push_str("unresolved"),
    }
    out.push_str("</div><div class=\"muted\">");
    match (report.client, report.explanation.resolution().reason()) {
        (Some(client), _) if client.is_fallback() => {
            out.push_str("the socket peer, as a fallback: no source resolved");
        }
        (Some(client), _) => {
            out.push_str("from source ");
            html(&mut out, client.source().as_str());
        }
        (None, Some(reason)) => html(&mut out, &reason.to_string()),
        (None, None) => {}
    }
    out.push_str("</div></div><div><div class=\"label\">Socket peer</div><div class=\"big\">");
    match report.peer {
        Some(peer) => html(&mut out, &peer.ip().to_canonical().to_string()),
        None => out.push_str("none"),
    }
    out.push_str("</div><div class=\"muted\">");
    match report.peer {
        Some(peer) => {
            out.push_str("port ");
            html(&mut out, &peer.port().to_string());
        }
        None => out.push_str("the server records no peer address"),
    }
    out.push_str("</div></div>");
    if let Some(key) = &report.key {
        out.push_str("<div><div class=\"label\">Rate-limit key</div><div class=\"big\">");
        match &key.key {
            Some(text) => html(&mut out, text),
            None => out.push_str("none"),
        }
        out.push_str("</div><div class=\"muted\">");
        match key.bucket {
            Some(bucket) => {
                let _ = write!(
                    out,
                    "{} of {} cells left; next cell in {} ms; full in {} ms",
                    bucket.remaining(),
                    bucket.burst(),
                    millis(bucket.next_cell_after()),
                    millis(bucket.full_after())
                );
            }
            None => out.push_str("bucket state unknown"),
        }
        out.push_str("</div></div>");
    }
    out.push_str("</section>");

    out.push_str("<h2>Forwarding headers, as received</h2><section class=\"card\">");
    if report.forwarding.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>");
    } else {
        out.push_str("<table><tr><th>Header</th><th>Value</th></tr>");
        for (name, value) in &report.forwarding {
            out.push_str("<tr><td><code>");
            html(&mut out, name);
            out.push_str("</code></td><td class=\"v\">");
            html(&mut out, value);
            out.push_str("</td></tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");

    out.push_str("<h2>Sources, in the order they are tried</h2>");
    for (index, source) in report.sources().iter().enumerate() {
        source_html(
            &mut out,
            source,
            report.is_decisive(index),
            report.is_after_decision(index),
        );
    }
    if report.sources().is_empty() {
        out.push_str("<p class=\"card muted\">No source is configured.</p>");
    }
    out.push_str("</main></body></html>");
    out
}

fn tag(out: &mut String, class: &str, text: &str) {
    out.push_str("<span class=\"tag ");
    out.push_str(class);
    out.push_str("\">");
    html(out, text);
    out.push_str("</span>");
}

fn source_html(out: &mut String, source: &Explanation, used: bool, not_reached: bool) {
    let resolution = source.resolution();
    out.push_str(match (used, not_reached) {
        (true, _) => "<section class=\"card used source\">",
        (false, true) => "<section class=\"card source unreached\">",
        (false, false) => "<section class=\"card source\">",
    });
    out.push_str("<div><code><b>");
    html(out, source.name());
    out.push_str("</b></code> ");
    let answer = outcome(resolution);
    tag(out, answer, answer);
    match resolution {
        Resolution::Resolved { ip, .. } => {
            out.push_str(" <code>");
            html(out, &ip.to_string());
            out.push_str("</code>");
        }
        Resolution::Absent(reason) | Resolution::Untrustworthy(reason) => {
            out.push_str(" <span class=\"muted\">");
            html(out, &reason.to_string());
            out.push_str("</span>");
        }
    }
    if used {
        out.push_str(" <span class=\"muted\">(this source decided)</span>");
    }
    if not_reached {
        out.push_str(
            " <span class=\"muted\">(not reached: an earlier source decided; shown for comparison)</span>",
        );
    }
    out.push_str("</div>");
    if let Some(trusted) = source.trusted() {
        out.push_str("<p class=\"muted\">Trusts: <code>");
        html(out, trusted);
        out.push_str("</code></p>");
    }
    if !source.steps().is_empty() {
        out.push_str("<table><tr><th>Step</th><th>Value</th><th>Verdict</th></tr>");
        for step in source.steps() {
            out.push_str("<tr><td>");
            match step {
                Step::Peer { ip, trusted } => {
                    out.push_str("socket peer</td><td class=\"v\">");
                    match ip {
                        Some(ip) => html(out, &ip.to_string()),
                        None => out.push_str("none"),
                    }
                    out.push_str("</td><td>");
                    if *trusted {
                        tag(out, "client", "trusted");
                    } else {
                        tag(out, "stopped", "not trusted");
                    }
                }
                Step::Entry {
                    position,
                    text,
                    verdict,
                } => {
                    let _ = write!(out, "entry {position} from the right</td><td class=\"v\">");
                    html(out, text);
                    out.push_str("</td><td>");
                    tag(out, verdict.code(), &verdict.to_string());
                }
                Step::Header {
                    name,
                    text,
                    verdict,
                } => {
                    html(out, name);
                    out.push_str("</td><td class=\"v\">");
                    html(out, text);
                    out.push_str("</td><td>");
                    tag(out, verdict.code(), &verdict.to_string());
                }
                Step::Note(text) => {
                    out.push_str("note</td><td colspan=\"2\">");
                    html(out, text);
                }
            }
            out.push_str("</td></tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}
