//! Header rules: HAProxy's `http-request` / `http-response` `set-header`, `add-header`,
//! `del-header`, `replace-header` (and on requests `redirect scheme | location | prefix`,
//! `deny`, `replace-path`, `set-path`) with an optional
//! `if` / `unless` condition, and values built from a few
//! variables (`%[src]`, `%[src_port]`, `%[dst]`, `%[dst_port]`, `%[fe_name]`, `%[be_name]`,
//! `%[srv_name]`, `%[req.hdr(name)]`, and the log-format aliases `%ci %cp %fi %fp %f %b %s`).
//! Rules and values are compiled at configuration load: nothing is parsed per request.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::acl::{Acl, Condition, RequestView};

/// A value source in a header template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    ClientAddr,
    ClientPort,
    LocalAddr,
    LocalPort,
    Frontend,
    Backend,
    Server,
    RequestHeader(HeaderName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A header value with variables, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

/// What a request contributes to templates.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// Client address.
    pub client: std::net::SocketAddr,
    /// Address the client connected to.
    pub local: std::net::SocketAddr,
    /// Frontend name.
    pub frontend: &'a str,
    /// Backend name ("" before one is chosen).
    pub backend: &'a str,
    /// Server name ("" before one is chosen).
    pub server: &'a str,
    /// The request's headers, as received.
    pub request_headers: &'a HeaderMap,
}

impl Template {
    /// Compiles `text`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            let (var, used) = if let Some(inner) = rest.strip_prefix('[') {
                let end = inner
                    .find(']')
                    .ok_or_else(|| format!("unclosed `%[` in `{text}`"))?;
                (sample(&inner[..end], text)?, end + 2)
            } else if rest.starts_with('%') {
                literal.push('%');
                rest = &rest[1..];
                continue;
            } else {
                let alias = [
                    ("ci", Var::ClientAddr),
                    ("cp", Var::ClientPort),
                    ("fi", Var::LocalAddr),
                    ("fp", Var::LocalPort),
                    ("f", Var::Frontend),
                    ("b", Var::Backend),
                    ("s", Var::Server),
                ]
                .into_iter()
                .find(|(name, _)| rest.starts_with(name))
                .ok_or_else(|| format!("unknown variable after `%` in `{text}`"))?;
                (alias.1, alias.0.len())
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Var(var));
            rest = &rest[used..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// The value for one request.
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(var) => match var {
                    Var::ClientAddr => out.push_str(&vars.client.ip().to_string()),
                    Var::ClientPort => out.push_str(&vars.client.port().to_string()),
                    Var::LocalAddr => out.push_str(&vars.local.ip().to_string()),
                    Var::LocalPort => out.push_str(&vars.local.port().to_string()),
                    Var::Frontend => out.push_str(vars.frontend),
                    Var::Backend => out.push_str(vars.backend),
                    Var::Server => out.push_str(vars.server),
                    Var::RequestHeader(name) => {
                        if let Some(value) =
                            vars.request_headers.get(name).and_then(|v| v.to_str().ok())
                        {
                            out.push_str(value);
                        }
                    }
                },
            }
        }
        out
    }
}

fn sample(name: &str, text: &str) -> Result<Var, String> {
    Ok(match name {
        "src" => Var::ClientAddr,
        "src_port" => Var::ClientPort,
        "dst" => Var::LocalAddr,
        "dst_port" => Var::LocalPort,
        "fe_name" => Var::Frontend,
        "be_name" => Var::Backend,
        "srv_name" => Var::Server,
        _ => {
            let header = name
                .strip_prefix("req.hdr(")
                .or_else(|| name.strip_prefix("hdr("))
                .and_then(|h| h.strip_suffix(')'))
                .ok_or_else(|| {
                    format!(
                        "unknown sample `{name}` in `{text}` (known: src, src_port, dst, dst_port, \
                         fe_name, be_name, srv_name, req.hdr(name))"
                    )
                })?;
            Var::RequestHeader(
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("`{header}` is not a header name"))?,
            )
        }
    })
}

/// What a rule does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Replace every value of the header with one.
    Set(HeaderName, Template),
    /// Add a value, keeping those there.
    Add(HeaderName, Template),
    /// Remove the header.
    Del(HeaderName),
    /// Answer with a redirect instead of forwarding (request rules only).
    Redirect(Redirect),
    /// Refuse the request with this status (HAProxy's `deny [deny_status N]`; request rules
    /// only).
    Deny(u16),
    /// Every value of the header that matches is replaced as a whole (`\1` refers to a
    /// group).
    ReplaceHeader(HeaderName, Rewrite),
    /// The path (without the query), if it matches, is replaced as a whole.
    ReplacePath(Rewrite),
    /// The path (without the query) is set from a template.
    SetPath(Template),
}

/// A regular expression and what a match becomes (HAProxy's `<match-regex> <replace-fmt>`).
#[derive(Debug, Clone)]
pub struct Rewrite {
    pattern: regex::Regex,
    /// The replacement in the regex crate's syntax (`\1` became `${1}`).
    replacement: String,
}

impl Rewrite {
    fn parse(pattern: &str, replacement: &str) -> Result<Rewrite, String> {
        let pattern = regex::Regex::new(pattern)
            .map_err(|e| format!("bad regular expression `{pattern}`: {e}"))?;
        // HAProxy writes back-references as \1; a literal `$` must not start one here.
        let mut converted = String::new();
        let mut chars = replacement.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                    let digit = chars.next().unwrap_or('0');
                    converted.push_str(&format!("${{{digit}}}"));
                }
                '$' => converted.push_str("$$"),
                other => converted.push(other),
            }
        }
        Ok(Rewrite {
            pattern,
            replacement: converted,
        })
    }

    /// What `text` becomes, if the expression matches it.
    pub fn apply(&self, text: &str) -> Option<String> {
        let captures = self.pattern.captures(text)?;
        let mut out = String::new();
        captures.expand(&self.replacement, &mut out);
        Some(out)
    }
}

/// HAProxy's `redirect scheme | location | prefix TARGET [code N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectTo {
    /// The same URL with this scheme (`https`).
    Scheme(String),
    /// This URL.
    Location(String),
    /// This prefix, then the request's path and query.
    Prefix(String),
}

/// A redirect rule's target and status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Where to.
    pub to: RedirectTo,
    /// 301, 302 (default), 303, 307 or 308.
    pub code: u16,
}

impl Redirect {
    fn parse(words: &[&str]) -> Result<Redirect, String> {
        let (kind, target, rest) = match words {
            [kind, target, rest @ ..] => (*kind, (*target).to_string(), rest),
            _ => {
                return Err(
                    "`redirect` needs `scheme`, `location` or `prefix` and a target".into(),
                );
            }
        };
        let to = match kind {
            "scheme" => RedirectTo::Scheme(target),
            "location" => RedirectTo::Location(target),
            "prefix" => RedirectTo::Prefix(target.trim_end_matches('/').to_string()),
            other => {
                return Err(format!(
                    "unknown redirect kind `{other}` (known: scheme, location, prefix)"
                ));
            }
        };
        let code = match rest {
            [] => 302,
            ["code", code] => code
                .parse()
                .ok()
                .filter(|c| [301, 302, 303, 307, 308].contains(c))
                .ok_or_else(|| {
                    format!("redirect code must be 301, 302, 303, 307 or 308, found `{code}`")
                })?,
            other => {
                return Err(format!(
                    "unexpected `{}` after the redirect target",
                    other.join(" ")
                ));
            }
        };
        Ok(Redirect { to, code })
    }

    /// The `Location` for a request for `path_and_query` with Host `host`.
    pub fn location(&self, host: Option<&str>, path_and_query: &str) -> String {
        match &self.to {
            RedirectTo::Scheme(scheme) => {
                format!("{scheme}://{}{path_and_query}", host.unwrap_or_default())
            }
            RedirectTo::Location(url) => url.clone(),
            RedirectTo::Prefix(prefix) => format!("{prefix}{path_and_query}"),
        }
    }
}

/// One `http-request` / `http-response` header rule.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    action: Action,
    condition: Option<Condition>,
}

impl HeaderRule {
    /// Parses `"set-header X-Proto https if is_tls"` against the frontend's `acls`.
    pub fn parse(line: &str, acls: &[Acl]) -> Result<HeaderRule, String> {
        let (body, condition) = match line.find(" if ").or_else(|| line.find(" unless ")) {
            Some(at) => (
                &line[..at],
                Some(Condition::parse(line[at..].trim(), acls).map_err(|e| e.0)?),
            ),
            None => (line, None),
        };
        let all: Vec<&str> = body.split_whitespace().collect();
        if all.first() == Some(&"deny") {
            let status = match &all[1..] {
                [] => 403,
                ["deny_status", code] => code
                    .parse()
                    .ok()
                    .filter(|c| (200..=599).contains(c))
                    .ok_or_else(|| format!("deny_status must be a status code, found `{code}`"))?,
                other => {
                    return Err(format!(
                        "expected `deny [deny_status CODE]`, found `deny {}`",
                        other.join(" ")
                    ));
                }
            };
            return Ok(HeaderRule {
                action: Action::Deny(status),
                condition,
            });
        }
        if all.first() == Some(&"redirect") {
            return Ok(HeaderRule {
                action: Action::Redirect(Redirect::parse(&all[1..])?),
                condition,
            });
        }
        match all.as_slice() {
            ["replace-path", pattern, replacement] => {
                return Ok(HeaderRule {
                    action: Action::ReplacePath(Rewrite::parse(pattern, replacement)?),
                    condition,
                });
            }
            ["set-path", path] => {
                return Ok(HeaderRule {
                    action: Action::SetPath(Template::parse(path)?),
                    condition,
                });
            }
            ["replace-header", name, pattern, replacement] => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{name}` is not a header name"))?;
                return Ok(HeaderRule {
                    action: Action::ReplaceHeader(name, Rewrite::parse(pattern, replacement)?),
                    condition,
                });
            }
            ["replace-path" | "set-path" | "replace-header", ..] => {
                return Err(format!(
                    "expected `replace-path REGEX REPLACEMENT`, `set-path PATH` or \
                     `replace-header NAME REGEX REPLACEMENT`, found `{body}`"
                ));
            }
            _ => {}
        }
        let mut words = body.trim().splitn(3, char::is_whitespace);
        let verb = words.next().unwrap_or_default();
        let name = words
            .next()
            .ok_or_else(|| format!("`{verb}` needs a header name"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let value = words.next().map(str::trim);
        let action = match (verb, value) {
            ("set-header", Some(v)) => Action::Set(name, Template::parse(v)?),
            ("add-header", Some(v)) => Action::Add(name, Template::parse(v)?),
            ("del-header", None) => Action::Del(name),
            ("set-header" | "add-header", None) => {
                return Err(format!("`{verb}` needs a value"));
            }
            ("del-header", Some(_)) => return Err("`del-header` takes only a name".into()),
            _ => {
                return Err(format!(
                    "unknown action `{verb}` (known: set-header, add-header, del-header, replace-header, replace-path, set-path, redirect, deny)"
                ));
            }
        };
        Ok(HeaderRule { action, condition })
    }

    /// The redirect this rule makes, if it is one.
    pub fn redirect(&self) -> Option<&Redirect> {
        match &self.action {
            Action::Redirect(redirect) => Some(redirect),
            _ => None,
        }
    }

    /// The status this rule refuses requests with, if it is a `deny`.
    pub fn deny(&self) -> Option<u16> {
        match &self.action {
            Action::Deny(status) => Some(*status),
            _ => None,
        }
    }

    /// True if the rule only makes sense on requests (`redirect`, `deny`, path rules).
    pub fn answers(&self) -> bool {
        matches!(
            self.action,
            Action::Redirect(_) | Action::Deny(_) | Action::ReplacePath(_) | Action::SetPath(_)
        )
    }

    /// The path a path rule makes of `path`, if it is one and changes it.
    pub fn new_path(&self, path: &str, vars: &Vars<'_>) -> Option<String> {
        match &self.action {
            Action::ReplacePath(rewrite) => rewrite.apply(path),
            Action::SetPath(template) => Some(template.render(vars)),
            _ => None,
        }
    }

    /// True if the rule's condition holds for `request` (or it has none).
    pub fn applies(&self, acls: &[Acl], request: &RequestView<'_>) -> bool {
        self.condition
            .as_ref()
            .is_none_or(|c| c.holds(acls, request))
    }

    /// Applies the rule to `headers`. A value that is not a valid header value (a variable
    /// brought in something odd) leaves the headers as they were.
    pub fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>) {
        match &self.action {
            Action::Set(name, template) => {
                if let Ok(value) = HeaderValue::from_str(&template.render(vars)) {
                    headers.insert(name.clone(), value);
                }
            }
            Action::Add(name, template) => {
                if let Ok(value) = HeaderValue::from_str(&template.render(vars)) {
                    headers.append(name.clone(), value);
                }
            }
            Action::Del(name) => {
                headers.remove(name);
            }
            Action::ReplaceHeader(name, rewrite) => {
                let values: Vec<HeaderValue> = headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| {
                        let text = v.to_str().ok()?;
                        match rewrite.apply(text) {
                            Some(new) => HeaderValue::from_str(&new).ok(),
                            None => Some(v.clone()),
                        }
                    })
                    .collect();
                if !values.is_empty() {
                    headers.remove(name);
                    for value in values {
                        headers.append(name.clone(), value);
                    }
                }
            }
            // Answered by the proxy before forwarding (`redirect`, `deny`), or applied to the
            // request's path (`new_path`).
            Action::Redirect(_) | Action::Deny(_) | Action::ReplacePath(_) | Action::SetPath(_) => {
            }
        }
    }
}

/// What an answering `http_request` rule does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'r> {
    /// Answer with this redirect.
    Redirect(&'r Redirect),
    /// Refuse with this status.
    Deny(u16),
}

/// The first `redirect` or `deny` rule of `rules` that applies to `request`, in the order the
/// rules are written (HAProxy evaluates `http-request` rules in order: a deny written before
/// a redirect wins, and the other way round).
pub fn answering_rule<'r>(
    rules: &'r [HeaderRule],
    acls: &[Acl],
    request: &RequestView<'_>,
) -> Option<Answer<'r>> {
    rules.iter().find_map(|rule| {
        let answer = match (rule.redirect(), rule.deny()) {
            (Some(redirect), _) => Answer::Redirect(redirect),
            (None, Some(status)) => Answer::Deny(status),
            (None, None) => return None,
        };
        rule.applies(acls, request).then_some(answer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_header_rewrites_use_haproxy_back_references() {
        let headers = HeaderMap::new();
        let vars = vars(&headers);
        let rule = HeaderRule::parse(r"replace-path ^/api/v1/(.*) /v1/\1", &[]).expect("rule");
        assert_eq!(
            rule.new_path("/api/v1/users", &vars).as_deref(),
            Some("/v1/users")
        );
        assert_eq!(
            rule.new_path("/static/x", &vars),
            None,
            "no match, no change"
        );
        let rule = HeaderRule::parse("set-path /maintenance", &[]).expect("rule");
        assert_eq!(rule.new_path("/x", &vars).as_deref(), Some("/maintenance"));
        let rule = HeaderRule::parse(r"replace-header User-Agent ^curl/(.*)$ tool/\1$", &[])
            .expect("rule");
        let mut target = HeaderMap::new();
        target.append("user-agent", HeaderValue::from_static("curl/8.0"));
        target.append("user-agent", HeaderValue::from_static("other"));
        rule.apply(&mut target, &vars);
        let values: Vec<&str> = target
            .get_all("user-agent")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            values,
            vec!["tool/8.0$", "other"],
            "a literal $ stays literal"
        );
        assert!(HeaderRule::parse("replace-path ([ /x", &[]).is_err());
        assert!(HeaderRule::parse("replace-path /only-one-word", &[]).is_err());
        assert!(!rule.answers(), "replace-header works on responses too");
    }

    #[test]
    fn deny_rules_parse_with_their_status() {
        let rule = HeaderRule::parse("deny", &[]).expect("deny");
        assert_eq!(rule.deny(), Some(403));
        assert!(rule.answers());
        let rule = HeaderRule::parse("deny deny_status 429", &[]).expect("deny 429");
        assert_eq!(rule.deny(), Some(429));
        assert!(HeaderRule::parse("deny deny_status 42", &[]).is_err());
        assert!(HeaderRule::parse("deny please", &[]).is_err());
        let header = HeaderRule::parse("set-header X-A 1", &[]).expect("set");
        assert_eq!(header.deny(), None);
        assert!(!header.answers());
    }

    fn vars(headers: &HeaderMap) -> Vars<'_> {
        Vars {
            client: "192.0.2.7:40001".parse().unwrap(),
            local: "10.0.0.1:443".parse().unwrap(),
            frontend: "www",
            backend: "app",
            server: "s1",
            request_headers: headers,
        }
    }

    #[test]
    fn templates_render_variables_and_literals() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("shop.example"));
        let v = vars(&headers);
        let t = Template::parse("%[src]:%[src_port] via %f/%b/%s to %[dst_port] 100%%").unwrap();
        assert_eq!(t.render(&v), "192.0.2.7:40001 via www/app/s1 to 443 100%");
        assert_eq!(
            Template::parse("%[req.hdr(Host)]").unwrap().render(&v),
            "shop.example"
        );
        assert_eq!(
            Template::parse("%ci:%cp").unwrap().render(&v),
            "192.0.2.7:40001"
        );
        assert!(Template::parse("%[nope]").is_err());
        assert!(Template::parse("%[src").is_err());
        assert!(Template::parse("%z").is_err());
    }

    /// The nginx seed's `proxy_set_header Host $host` and `add_header X-NGINX ...` as rules.
    #[test]
    fn set_add_and_delete_headers() {
        let mut request = HeaderMap::new();
        request.insert("host", HeaderValue::from_static("shop.example"));
        request.insert("x-secret", HeaderValue::from_static("1"));
        let received = request.clone();
        let v = vars(&received);
        for line in [
            "set-header Host %[req.hdr(host)]",
            "set-header X-NGINX NGINX-%[be_name]",
            "add-header X-Forwarded-Port %[dst_port]",
            "add-header X-Forwarded-Port 8443",
            "del-header X-Secret",
        ] {
            HeaderRule::parse(line, &[])
                .unwrap()
                .apply(&mut request, &v);
        }
        assert_eq!(request["host"], "shop.example");
        assert_eq!(request["x-nginx"], "NGINX-app");
        let ports: Vec<_> = request.get_all("x-forwarded-port").iter().collect();
        assert_eq!(ports, ["443", "8443"]);
        assert!(request.get("x-secret").is_none());
        assert!(HeaderRule::parse("set-header X-A", &[]).is_err());
        assert!(HeaderRule::parse("del-header X-A b", &[]).is_err());
        assert!(HeaderRule::parse("replace-header X-A b", &[]).is_err());
        assert!(HeaderRule::parse("set-header X-A b if nope", &[]).is_err());
    }

    #[test]
    fn redirects_parse_and_build_locations() {
        let rule = HeaderRule::parse(
            "redirect scheme https code 301 unless tls",
            &[Acl::parse("tls ssl_fc").unwrap()],
        )
        .unwrap();
        let redirect = rule.redirect().unwrap();
        assert_eq!(redirect.code, 301);
        assert_eq!(
            redirect.location(Some("shop.example"), "/a?b=1"),
            "https://shop.example/a?b=1"
        );
        let prefix = HeaderRule::parse("redirect prefix https://new.example/", &[]).unwrap();
        assert_eq!(prefix.redirect().unwrap().code, 302);
        assert_eq!(
            prefix.redirect().unwrap().location(None, "/x"),
            "https://new.example/x"
        );
        assert!(HeaderRule::parse("redirect scheme https code 200", &[]).is_err());
        assert!(HeaderRule::parse("redirect elsewhere x", &[]).is_err());
        assert!(HeaderRule::parse("redirect scheme", &[]).is_err());
    }

    /// A plain GET of `path`.
    fn get(path: &'static str) -> RequestView<'static> {
        RequestView {
            method: "GET",
            path,
            query: None,
            headers: Vec::new(),
            src: None,
            tls: false,
        }
    }

    #[test]
    fn answering_rules_apply_in_the_order_written() {
        let acls = vec![Acl::parse("is_old path_beg /old").unwrap()];
        let view = get;
        let rules = |lines: &[&str]| -> Vec<HeaderRule> {
            lines
                .iter()
                .map(|l| HeaderRule::parse(l, &acls).unwrap())
                .collect()
        };
        let deny_first = rules(&[
            "set-header X-Seen yes",
            "deny deny_status 429 if is_old",
            "redirect prefix https://new.example if is_old",
        ]);
        assert_eq!(
            answering_rule(&deny_first, &acls, &view("/old/a")),
            Some(Answer::Deny(429))
        );
        let redirect_first = rules(&[
            "redirect prefix https://new.example if is_old",
            "deny deny_status 429 if is_old",
        ]);
        assert!(matches!(
            answering_rule(&redirect_first, &acls, &view("/old/a")),
            Some(Answer::Redirect(r)) if r.code == 302
        ));
        // A rule whose condition does not hold is passed over; header rules never answer.
        assert_eq!(answering_rule(&deny_first, &acls, &view("/new")), None);
    }

    #[test]
    fn conditions_gate_rules() {
        let acls = vec![Acl::parse("is_api path_beg /api").unwrap()];
        let rule = HeaderRule::parse("set-header X-Api yes if is_api", &acls).unwrap();
        let view = get;
        assert!(rule.applies(&acls, &view("/api/x")));
        assert!(!rule.applies(&acls, &view("/web")));
    }
}
