//! graphite-web's events API over the store's event log: `POST /events`
//! records one (a JSON body), `GET /events/get_data` lists them by time and
//! tags (what Grafana's Graphite annotations read), `GET /events/<id>` one.
//! Shapes as graphite-web 1.1.8 answers them.

use serde_json::{json, Value};

use super::time::{civil_from_days, parse_time};
use super::{Params, ReadApi, Reply};
use crate::store::events::Event;

/// An events request: the method, the query string alone (graphite-web
/// filters on it only) and the raw body.
pub struct EventRequest<'a> {
    /// POST or not.
    pub post: bool,
    /// The query string's parameters.
    pub query: &'a Params,
    /// The body.
    pub body: &'a [u8],
}

fn event_json(e: &Event) -> Value {
    json!({
        "when": e.when.floor() as i64,
        "what": e.what,
        "data": e.data,
        "tags": e.tags,
        "id": e.id,
    })
}

/// `2026-12-02T00:01:40Z`, as graphite-web's detail view writes `when`.
fn iso_time(seconds: f64) -> String {
    let s = seconds.floor() as i64;
    let (y, m, d) = civil_from_days(s.div_euclid(86_400));
    let t = s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn plain_error(status: u16, message: &str) -> Reply {
    let mut reply = Reply::json_error(status, message);
    reply.content_type = "text/html; charset=utf-8";
    reply
}

impl ReadApi {
    /// Any `/events...` path; `None` when it is not one.
    pub fn events(&self, path: &str, request: &EventRequest<'_>, now: f64) -> Option<Reply> {
        let rest = path.strip_prefix("/events")?;
        Some(match rest {
            "" if request.post => self.post_event(request.body, now),
            "" => self.get_events(request.query, now),
            "/get_data" => self.get_events(request.query, now),
            other => {
                let id = other.strip_prefix('/')?;
                match id.parse::<u64>() {
                    Ok(id) => self.event_detail(id),
                    Err(_) => return None,
                }
            }
        })
    }

    fn post_event(&self, body: &[u8], now: f64) -> Reply {
        let event: Value = match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return plain_error(400, "the body must be a JSON object"),
            Err(e) => return plain_error(400, &format!("the body is not JSON: {e}")),
        };
        let tags: Vec<String> = match event.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| match t {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .flat_map(|t| t.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(_) => {
                return plain_error(400, "\"tags\" must be an array or space-separated string")
            }
        };
        let when = match event.get("when") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(n) => Some(n),
                Err(_) => return plain_error(400, "\"when\" must be a Unix time in seconds"),
            },
            Some(_) => return plain_error(400, "\"when\" must be a Unix time in seconds"),
        };
        if when.is_some_and(|w| !w.is_finite()) {
            return plain_error(400, "\"when\" must be a Unix time in seconds");
        }
        let Some(what) = event.get("what").and_then(Value::as_str) else {
            return plain_error(400, "\"what\" (a string) is required");
        };
        let data = match event.get("data") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        self.store.events.add(when, what, &data, tags, now);
        Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: Vec::new(),
        }
    }

    fn get_events(&self, query: &Params, now: f64) -> Reply {
        let wall = now.floor() as i64;
        let time = |key: &str, default: i64| -> Result<i64, Reply> {
            match query.get(key) {
                None => Ok(default),
                Some(t) => parse_time(t, wall).map_err(|e| Reply::invalid(format!("{key}: {e}"))),
            }
        };
        let (from, until) = match (time("from", 0), time("until", wall)) {
            (Ok(f), Ok(u)) => (f, u),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let tags: Option<Vec<&str>> = query.get("tags").map(|t| t.split(' ').collect());
        let union = query.get("set") == Some("union");
        let found = self
            .store
            .events
            .find(from as f64, until as f64, tags.as_deref(), union);
        let body = Value::Array(found.iter().map(event_json).collect()).to_string();
        match query.get("jsonp") {
            Some(callback) => Reply::ok("text/javascript", format!("{callback}({body})")),
            None => Reply::ok("application/json", body),
        }
    }

    fn event_detail(&self, id: u64) -> Reply {
        match self.store.events.get(id) {
            Some(e) => Reply::ok(
                "application/json",
                json!({
                    "id": e.id,
                    "when": iso_time(e.when),
                    "what": e.what,
                    "data": e.data,
                    "tags": e.tags,
                })
                .to_string(),
            ),
            None => Reply::json_error(404, "Event matching query does not exist"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_times_are_utc_iso() {
        assert_eq!(iso_time(1_796_169_700.0), "2026-12-02T00:01:40Z");
        assert_eq!(iso_time(0.0), "1970-01-01T00:00:00Z");
    }
}
