//! graphite-web's `/tags` endpoints over the store's tag index: list tags
//! and values, find series by tag expressions, autocomplete for Grafana's
//! tag editor, and `tagSeries`/`tagMultiSeries`/`delSeries` for senders
//! that register series as carbon does. Shapes and errors as graphite-web
//! 1.1.8 with its local tag database answers them.

use serde_json::{json, Value};

use super::{Params, ReadApi, Reply};

/// graphite-web's TAGDB_AUTOCOMPLETE_LIMIT.
const AUTOCOMPLETE_LIMIT: usize = 100;

/// Method of the request, as far as the tag endpoints care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (or HEAD).
    Get,
    /// POST.
    Post,
}

fn json_reply(value: &Value) -> Reply {
    Reply::ok("application/json", value.to_string())
}

/// A list as JSON, or the reason it could not be made as a 400.
fn answer(list: Result<Vec<String>, String>) -> Reply {
    match list {
        Ok(items) => json_reply(&json!(items)),
        Err(e) => Reply::json_error(400, &e),
    }
}

fn limit(params: &Params) -> Result<Option<usize>, Reply> {
    match params.get("limit").filter(|l| !l.is_empty()) {
        None => Ok(None),
        Some(l) => l.trim().parse::<usize>().map(Some).map_err(|_| {
            Reply::json_error(
                400,
                &format!("invalid literal for int() with base 10: '{l}' (limit)"),
            )
        }),
    }
}

fn not_allowed() -> Reply {
    Reply {
        status: 405,
        content_type: "text/plain; charset=utf-8",
        body: b"method not allowed: use POST to register or delete series\n".to_vec(),
    }
}

impl ReadApi {
    /// Any `/tags...` path; `None` when it is not one.
    pub fn tags(&self, path: &str, method: Method, params: &Params) -> Option<Reply> {
        let rest = path.strip_prefix("/tags")?;
        Some(match rest {
            "" => self.tag_list(params),
            "/autoComplete/tags" => self.auto_complete_tags(params),
            "/autoComplete/values" => self.auto_complete_values(params),
            "/findSeries" => self.find_tagged(params),
            "/tagSeries" if method == Method::Post => self.tag_series(params, false),
            "/tagMultiSeries" if method == Method::Post => self.tag_series(params, true),
            "/delSeries" if method == Method::Post => self.del_series(params),
            "/tagSeries" | "/tagMultiSeries" | "/delSeries" => not_allowed(),
            other => match other.strip_prefix('/') {
                Some(tag) if !tag.contains('/') => self.tag_details(tag, params),
                _ => return None,
            },
        })
    }

    fn tag_list(&self, params: &Params) -> Reply {
        let limit = match limit(params) {
            Ok(l) => l,
            Err(r) => return r,
        };
        match self.store.tags.list_tags(params.get("filter"), limit) {
            Ok(tags) => json_reply(&Value::Array(
                tags.into_iter()
                    .map(|t| json!({"id": t.id, "tag": t.text}))
                    .collect(),
            )),
            Err(e) => Reply::json_error(400, &e),
        }
    }

    fn tag_details(&self, tag: &str, params: &Params) -> Reply {
        let limit = match limit(params) {
            Ok(l) => l,
            Err(r) => return r,
        };
        let Some(id) = self.store.tags.tag_id(tag) else {
            return json_reply(&Value::Null);
        };
        match self
            .store
            .tags
            .list_values(tag, params.get("filter"), limit)
        {
            Ok(values) => json_reply(&json!({
                "id": id,
                "tag": tag,
                "values": values
                    .into_iter()
                    .map(|v| json!({"id": v.id, "value": v.text, "count": v.count}))
                    .collect::<Vec<_>>(),
            })),
            Err(e) => Reply::json_error(400, &e),
        }
    }

    fn find_tagged(&self, params: &Params) -> Reply {
        let exprs = params.all("expr");
        if exprs.is_empty() {
            return Reply::json_error(400, "no tag expressions specified");
        }
        answer(self.store.tags.find_series(&exprs))
    }

    fn auto_complete_tags(&self, params: &Params) -> Reply {
        let limit = match limit(params) {
            Ok(l) => l.unwrap_or(AUTOCOMPLETE_LIMIT),
            Err(r) => return r,
        };
        let exprs = params.all("expr");
        answer(
            self.store
                .tags
                .auto_complete_tags(&exprs, params.get("tagPrefix"), limit),
        )
    }

    fn auto_complete_values(&self, params: &Params) -> Reply {
        let Some(tag) = params.get("tag").filter(|t| !t.is_empty()) else {
            return Reply::json_error(400, "no tag specified");
        };
        let limit = match limit(params) {
            Ok(l) => l.unwrap_or(AUTOCOMPLETE_LIMIT),
            Err(r) => return r,
        };
        let exprs = params.all("expr");
        answer(
            self.store
                .tags
                .auto_complete_values(&exprs, tag, params.get("valuePrefix"), limit),
        )
    }

    fn tag_series(&self, params: &Params, multi: bool) -> Reply {
        let paths = params.all("path");
        if paths.is_empty() || (!multi && paths.iter().all(|p| p.is_empty())) {
            let what = if multi {
                "no paths specified"
            } else {
                "no path specified"
            };
            return Reply::json_error(400, what);
        }
        let mut names = Vec::with_capacity(paths.len());
        // graphite-web reads the last `path` of a single registration.
        let chosen: Vec<&str> = if multi {
            paths
        } else {
            params.get("path").into_iter().collect()
        };
        for path in chosen {
            match self.store.tags.insert(path) {
                Ok(name) => names.push(name),
                Err(e) => return Reply::json_error(400, &e),
            }
        }
        if multi {
            json_reply(&json!(names))
        } else {
            json_reply(&json!(names.first()))
        }
    }

    fn del_series(&self, params: &Params) -> Reply {
        let paths = params.all("path");
        if paths.is_empty() {
            return Reply::json_error(400, "no path specified");
        }
        for path in paths {
            if let Err(e) = self.store.tags.remove(path) {
                return Reply::json_error(400, &e);
            }
        }
        json_reply(&Value::Bool(true))
    }
}
