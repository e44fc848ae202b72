//! Policy: which callers may run which operation, in oslo.policy's language.
//!
//! The rules are the reference's defaults (every data-plane operation open
//! to whoever reaches the route; health, pools and flavor changes kept to
//! `role:admin`), overridden rule by rule by an operator's policy file
//! (`[oslo_policy] policy_file`, YAML or JSON, as oslo.policy reads it).
//!
//! Check strings use oslo.policy's syntax: `@` (always), `!` (never),
//! `role:<name>`, `rule:<name>`, generic checks `<credential>:<value>`
//! (`project_id:%(project_id)s`, `is_admin:True`, `'literal':%(field)s`),
//! combined with `not`, `and`, `or` and parentheses (`not` binds tightest,
//! then `and`, then `or`). An empty string allows everyone.
//!
//! Differences from oslo.policy, all on the safe side:
//! - a check string that does not parse, or a `rule:` naming a rule that
//!   does not exist (or a loop of rules), stops the server at start-up with
//!   a message naming the rule; oslo.policy logs it and denies at run time;
//! - the enforcement target is `{}`, as in the reference: a `%(name)s`
//!   substitution finds nothing, so such a check denies (owner-style rules
//!   never match, as in the reference);
//! - the credentials are the request context: `project_id`, `user_id`,
//!   `roles`, `client_id`, and `is_admin`, true when the caller holds the
//!   `admin` role (the reference's context never sets it);
//! - an operation whose rule is missing is denied.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};

/// The reference's default rules (Zaqar 23 `zaqar/common/policies`).
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    ("context_is_admin", "role:admin"),
    (
        "admin_or_owner",
        "is_admin:True or project_id:%(project_id)s",
    ),
    ("queues:get_all", ""),
    ("queues:create", ""),
    ("queues:get", ""),
    ("queues:delete", ""),
    ("queues:update", ""),
    ("queues:stats", ""),
    ("queues:share", ""),
    ("queues:purge", ""),
    ("messages:get_all", ""),
    ("messages:create", ""),
    ("messages:get", ""),
    ("messages:delete", ""),
    ("messages:delete_all", ""),
    ("claims:create", ""),
    ("claims:get", ""),
    ("claims:delete", ""),
    ("claims:update", ""),
    ("subscription:get_all", ""),
    ("subscription:create", ""),
    ("subscription:get", ""),
    ("subscription:delete", ""),
    ("subscription:update", ""),
    ("subscription:confirm", ""),
    ("topics:get_all", ""),
    ("topics:create", ""),
    ("topics:get", ""),
    ("topics:delete", ""),
    ("topics:update", ""),
    ("topics:stats", ""),
    ("topics:purge", ""),
    ("ping:get", ""),
    ("health:get", "role:admin"),
    ("pools:get_all", "role:admin"),
    ("pools:create", "role:admin"),
    ("pools:get", "role:admin"),
    ("pools:delete", "role:admin"),
    ("pools:update", "role:admin"),
    ("flavors:get_all", ""),
    ("flavors:get", ""),
    ("flavors:create", "role:admin"),
    ("flavors:delete", "role:admin"),
    ("flavors:update", "role:admin"),
];

/// A sample `policy.yaml`: every rule at its default, commented out, as
/// `oslopolicy-sample-generator` writes one (`zaqar-server
/// --sample-policy`). Uncommented, it is a policy equal to the defaults.
pub fn sample_policy() -> String {
    let mut out = String::from(
        "# Zaqar policy rules, at their defaults (zaqar-server --sample-policy).\n\
         # Uncomment a rule and change its check string to override it; rules\n\
         # not in the file keep these defaults.\n\n",
    );
    for (name, check) in DEFAULT_RULES {
        out.push_str(&format!("#\"{name}\": \"{check}\"\n\n"));
    }
    out
}

/// The policy file looked up next to the configuration file when
/// `[oslo_policy] policy_file` is not set (oslo.policy's default name).
pub const DEFAULT_POLICY_FILE: &str = "policy.yaml";

/// Why the policy could not be loaded. Every variant names the file or the
/// rule at fault.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("policy file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A rule's check string is not valid.
    #[error("policy rule {rule:?}: {reason}")]
    Rule {
        /// The rule's name.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One parsed check.
#[derive(Clone, Debug, PartialEq)]
enum Check {
    /// `@` or the empty string.
    Allow,
    /// `!`.
    Deny,
    /// `role:<name>` (the name may be a `%(..)s` template).
    Role(Template),
    /// `rule:<name>`.
    Rule(String),
    /// `<credential path>:<value>`.
    Credential {
        path: Vec<String>,
        value: Template,
    },
    /// `<literal>:<value>` (`'member':%(role)s`, `True:%(flag)s`).
    Literal {
        literal: String,
        value: Template,
    },
    Not(Box<Check>),
    And(Vec<Check>),
    Or(Vec<Check>),
}

/// The right-hand side of a check: text with `%(name)s` fields filled from
/// the target.
#[derive(Clone, Debug, PartialEq)]
struct Template(Vec<Piece>);

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Field(String),
}

/// What a check is evaluated against: the target (always empty, see the
/// module doc) and the caller's credentials.
struct Scope<'a> {
    target: &'a HashMap<String, String>,
    ctx: &'a RequestContext,
}

/// A credential's value: a string or a list (`roles`).
enum Credential {
    One(String),
    Many(Vec<String>),
}

/// The policy enforcer: the rules in force. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Arc<HashMap<String, Check>>,
    /// The file the overrides came from, for the log.
    source: Option<PathBuf>,
}

impl Default for Policy {
    /// The reference's default rules.
    fn default() -> Self {
        Policy::from_rules(std::iter::empty::<(String, String)>()).expect("the default rules parse")
    }
}

impl Policy {
    /// The default rules with `overrides` (rule name → check string) on top.
    ///
    /// # Errors
    /// A check string does not parse, or a `rule:` names a missing rule or
    /// a loop of rules.
    pub fn from_rules<I, K, V>(overrides: I) -> Result<Policy, PolicyError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: AsRef<str>,
    {
        let mut rules = HashMap::new();
        for (name, text) in DEFAULT_RULES {
            rules.insert((*name).to_owned(), parse(name, text)?);
        }
        for (name, text) in overrides {
            let name = name.into();
            let check = parse(&name, text.as_ref())?;
            rules.insert(name, check);
        }
        for name in rules.keys() {
            check_references(&rules, name, &mut Vec::new())?;
        }
        Ok(Policy {
            rules: Arc::new(rules),
            source: None,
        })
    }

    /// Reads a policy file (YAML or JSON: a mapping of rule name to check
    /// string) over the default rules.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a rule is invalid.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let read_error = |reason: String| PolicyError::Read {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
        let doc: Option<BTreeMap<String, serde_norway::Value>> =
            serde_norway::from_str(&text).map_err(|e| read_error(e.to_string()))?;
        let mut overrides = Vec::new();
        for (name, value) in doc.unwrap_or_default() {
            let text = match value {
                serde_norway::Value::String(s) => s,
                serde_norway::Value::Null => String::new(),
                other => {
                    return Err(PolicyError::Rule {
                        rule: name,
                        reason: format!(
                            "the check must be a string, not {}",
                            serde_norway::to_string(&other).unwrap_or_default().trim()
                        ),
                    })
                }
            };
            overrides.push((name, text));
        }
        let mut policy = Policy::from_rules(overrides)?;
        policy.source = Some(path.to_owned());
        Ok(policy)
    }

    /// The policy a configuration asks for: `[oslo_policy] policy_file`
    /// (a relative path is looked up next to the configuration files, last
    /// first, then in oslo.config's search directories),
    /// else `policy.yaml` next to the configuration file when it exists,
    /// else the default rules.
    ///
    /// # Errors
    /// A configured file is missing, or a file is invalid.
    pub fn load(config: &Config) -> Result<Policy, PolicyError> {
        let Some(path) = Policy::file_of(config)? else {
            return Ok(Policy::default());
        };
        if !path.exists() {
            return Ok(Policy::default());
        }
        let policy = Policy::from_file(&path)?;
        tracing::info!(file = %path.display(), "policy rules loaded");
        Ok(policy)
    }

    /// The policy file a configuration names (which may not exist yet:
    /// oslo.policy's default name is optional), `None` when there is no
    /// configuration file and none is named.
    ///
    /// # Errors
    /// A file named in `[oslo_policy] policy_file` does not exist.
    pub fn file_of(config: &Config) -> Result<Option<PathBuf>, PolicyError> {
        let configured = config
            .sections
            .get("oslo_policy")
            .and_then(|s| s.get("policy_file"))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty());
        let dir = config.config_dir.as_deref();
        // A relative name: the first of the lookup directories that holds
        // it (oslo.config's find_file), else the configuration's directory.
        let resolve = |name: &str| {
            if Path::new(name).is_absolute() {
                return PathBuf::from(name);
            }
            config
                .lookup_dirs
                .iter()
                .map(|d| d.join(name))
                .find(|p| p.exists())
                .or_else(|| dir.map(|d| d.join(name)))
                .unwrap_or_else(|| PathBuf::from(name))
        };
        let path = match configured {
            Some(name) => {
                let path = resolve(name);
                // oslo.policy's default name may be absent; a name the
                // operator chose must exist.
                if name != DEFAULT_POLICY_FILE && !path.exists() {
                    return Err(PolicyError::Read {
                        path,
                        reason: "no such file ([oslo_policy] policy_file)".into(),
                    });
                }
                path
            }
            None => resolve(DEFAULT_POLICY_FILE),
        };
        if dir.is_none() && configured.is_none() {
            return Ok(None);
        }
        Ok(Some(path))
    }

    /// The file the rules came from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Whether `rule` allows the caller.
    pub fn allows(&self, rule: &str, ctx: &RequestContext) -> bool {
        let target = HashMap::new();
        let scope = Scope {
            target: &target,
            ctx,
        };
        match self.rules.get(rule) {
            Some(check) => self.eval(check, &scope),
            None => {
                tracing::error!(rule, "no policy rule of that name: denied");
                false
            }
        }
    }

    /// Checks `rule` for the caller.
    ///
    /// # Errors
    /// 403 "Not authorized" when the rule refuses the caller.
    pub fn enforce(&self, rule: &str, ctx: &RequestContext) -> ApiResult<()> {
        if self.allows(rule, ctx) {
            Ok(())
        } else {
            tracing::info!(rule, project = %ctx.project_id, request_id = %ctx.request_id, "refused by policy");
            Err(ApiError::not_authorized())
        }
    }

    fn eval(&self, check: &Check, scope: &Scope<'_>) -> bool {
        match check {
            Check::Allow => true,
            Check::Deny => false,
            Check::Role(name) => name
                .render(scope.target)
                .is_some_and(|name| scope.ctx.has_role(&name)),
            // References are checked at load time, so a missing one (and a
            // loop) cannot happen here; deny if it did.
            Check::Rule(name) => self.rules.get(name).is_some_and(|c| self.eval(c, scope)),
            Check::Credential { path, value } => {
                let (Some(want), Some(have)) =
                    (value.render(scope.target), credential(scope.ctx, path))
                else {
                    return false;
                };
                match have {
                    Credential::One(v) => v == want,
                    Credential::Many(vs) => vs.contains(&want),
                }
            }
            Check::Literal { literal, value } => {
                value.render(scope.target).is_some_and(|v| v == *literal)
            }
            Check::Not(c) => !self.eval(c, scope),
            Check::And(cs) => cs.iter().all(|c| self.eval(c, scope)),
            Check::Or(cs) => cs.iter().any(|c| self.eval(c, scope)),
        }
    }
}

/// The caller's credential at `path` (oslo.context's policy values).
fn credential(ctx: &RequestContext, path: &[String]) -> Option<Credential> {
    let [key] = path else {
        return None;
    };
    Some(match key.as_str() {
        "project_id" | "tenant" | "tenant_id" => Credential::One(ctx.project_id.clone()),
        "user_id" | "user" => Credential::One(ctx.user_id.clone()?),
        "client_id" => Credential::One(ctx.client_id.clone()),
        "roles" => Credential::Many(ctx.roles.iter().map(|r| r.to_ascii_lowercase()).collect()),
        "is_admin" => Credential::One(if ctx.is_admin() { "True" } else { "False" }.into()),
        _ => return None,
    })
}

/// Refuses `rule:` references to missing rules and loops.
fn check_references(
    rules: &HashMap<String, Check>,
    name: &str,
    stack: &mut Vec<String>,
) -> Result<(), PolicyError> {
    if stack.iter().any(|n| n == name) {
        stack.push(name.to_owned());
        return Err(PolicyError::Rule {
            rule: stack[0].clone(),
            reason: format!(
                "rules refer to each other in a loop: {}",
                stack.join(" -> ")
            ),
        });
    }
    let Some(check) = rules.get(name) else {
        return Err(PolicyError::Rule {
            rule: stack.last().cloned().unwrap_or_else(|| name.to_owned()),
            reason: format!("rule:{name} names no rule"),
        });
    };
    stack.push(name.to_owned());
    let mut refs = Vec::new();
    collect_references(check, &mut refs);
    for r in refs {
        check_references(rules, r, stack)?;
    }
    stack.pop();
    Ok(())
}

fn collect_references<'a>(check: &'a Check, out: &mut Vec<&'a str>) {
    match check {
        Check::Rule(name) => out.push(name),
        Check::Not(c) => collect_references(c, out),
        Check::And(cs) | Check::Or(cs) => cs.iter().for_each(|c| collect_references(c, out)),
        _ => {}
    }
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%(") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find(")s")
                .ok_or_else(|| format!("unterminated %(...)s field in {text:?}"))?;
            pieces.push(Piece::Field(after[..end].to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template(pieces))
    }

    /// The text with its fields filled from `target`; `None` when a field is
    /// missing (the check then denies, as oslo.policy's does).
    fn render(&self, target: &HashMap<String, String>) -> Option<String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(target.get(f)?),
            }
        }
        Some(out)
    }
}

/// Parses one rule's check string.
fn parse(rule: &str, text: &str) -> Result<Check, PolicyError> {
    let error = |reason: String| PolicyError::Rule {
        rule: rule.to_owned(),
        reason,
    };
    let tokens = tokenize(text);
    if tokens.is_empty() {
        return Ok(Check::Allow);
    }
    let mut parser = Parser { tokens, pos: 0 };
    let check = parser.or().map_err(error)?;
    if let Some(extra) = parser.tokens.get(parser.pos) {
        return Err(error(format!("unexpected {extra:?} in {text:?}")));
    }
    Ok(check)
}

/// Splits on white space and peels parentheses off the words, as
/// oslo.policy's tokenizer does.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let mut word = word;
        while let Some(rest) = word.strip_prefix('(') {
            tokens.push("(".to_owned());
            word = rest;
        }
        let mut closing = 0;
        // A `%(name)s` field ends in `)s`, so a trailing `)` always closes a
        // group.
        while let Some(rest) = word.strip_suffix(')') {
            closing += 1;
            word = rest;
        }
        if !word.is_empty() {
            tokens.push(word.to_owned());
        }
        tokens.extend((0..closing).map(|_| ")".to_owned()));
    }
    tokens
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Check, String> {
        let mut terms = vec![self.and()?];
        while self.peek() == Some("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Check::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Check, String> {
        let mut terms = vec![self.not()?];
        while self.peek() == Some("and") {
            self.pos += 1;
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Check::And(terms)
        })
    }

    fn not(&mut self) -> Result<Check, String> {
        if self.peek() == Some("not") {
            self.pos += 1;
            return Ok(Check::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Check, String> {
        let Some(token) = self.next() else {
            return Err("the check ends too early".into());
        };
        match token.as_str() {
            "(" => {
                let inner = self.or()?;
                match self.next().as_deref() {
                    Some(")") => Ok(inner),
                    Some(t) => Err(format!("expected ')', found {t:?}")),
                    None => Err("missing ')'".into()),
                }
            }
            ")" | "and" | "or" => Err(format!("unexpected {token:?}")),
            "@" => Ok(Check::Allow),
            "!" => Ok(Check::Deny),
            _ => check(&token),
        }
    }
}

/// Parses one `kind:match` check.
fn check(token: &str) -> Result<Check, String> {
    let Some((kind, value)) = token.split_once(':') else {
        return Err(format!(
            "{token:?} is not a check (expected kind:value, @ or !)"
        ));
    };
    if value.is_empty() {
        return Err(format!("{token:?} has nothing after ':'"));
    }
    let template = Template::parse(value)?;
    match kind {
        "role" => Ok(Check::Role(template)),
        "rule" => {
            if value.contains("%(") {
                return Err(format!("{token:?}: a rule name cannot be a template"));
            }
            Ok(Check::Rule(value.to_owned()))
        }
        "http" | "https" => Err(format!(
            "{token:?}: remote (http/https) checks are not supported"
        )),
        "" => Err(format!("{token:?} has nothing before ':'")),
        _ => {
            if let Some(literal) = literal(kind) {
                return Ok(Check::Literal {
                    literal,
                    value: template,
                });
            }
            Ok(Check::Credential {
                path: kind.split('.').map(String::from).collect(),
                value: template,
            })
        }
    }
}

/// The text of a literal left-hand side (`'text'`, `"text"`, `True`,
/// `False`, a number), compared as Python's `str()` renders it.
fn literal(kind: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        if let Some(inner) = kind.strip_prefix(quote).and_then(|k| k.strip_suffix(quote)) {
            return Some(inner.to_owned());
        }
    }
    if matches!(kind, "True" | "False" | "None") || kind.parse::<f64>().is_ok() {
        return Some(kind.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(roles: &[&str]) -> RequestContext {
        RequestContext {
            project_id: "p1".into(),
            client_id: "c".into(),
            user_id: Some("u1".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            request_id: "req-x".into(),
            auth_token: None,
        }
    }

    fn allows(rule: &str, roles: &[&str]) -> bool {
        Policy::from_rules([("t", rule)])
            .unwrap()
            .allows("t", &ctx(roles))
    }

    #[test]
    fn defaults_follow_the_reference() {
        let p = Policy::default();
        assert!(p.allows("queues:create", &ctx(&[])));
        assert!(!p.allows("health:get", &ctx(&["member"])));
        assert!(p.allows("health:get", &ctx(&["Admin"])));
        assert!(!p.allows("flavors:create", &ctx(&[])));
        assert!(p.allows("flavors:get", &ctx(&[])));
        assert!(!p.allows("no:such_rule", &ctx(&["admin"])));
        assert_eq!(
            p.enforce("pools:get", &ctx(&[])),
            Err(ApiError::not_authorized())
        );
    }

    #[test]
    fn every_operation_rule_has_a_default() {
        let known: Vec<&str> = DEFAULT_RULES.iter().map(|(n, _)| *n).collect();
        for kind in crate::api::operation::OperationKind::ALL {
            if let Some(rule) = kind.policy_rule() {
                assert!(
                    known.contains(&rule),
                    "{rule} ({kind:?}) has no default rule"
                );
            }
        }
    }

    #[test]
    fn check_syntax() {
        assert!(allows("", &[]));
        assert!(allows("@", &[]));
        assert!(!allows("!", &[]));
        assert!(allows("role:admin", &["admin"]));
        assert!(allows("role:ADMIN", &["admin"]));
        assert!(!allows("role:admin", &["member"]));
        assert!(allows("role:admin or role:member", &["member"]));
        assert!(!allows("role:admin and role:member", &["member"]));
        assert!(allows("not role:admin", &["member"]));
        assert!(!allows("not (role:admin or role:member)", &["member"]));
        assert!(allows("(role:a and role:b) or role:c", &["c"]));
        assert!(allows("((role:a)) or (role:b and (not role:c))", &["b"]));
        assert!(
            allows("role:a or role:b and role:c", &["a"]),
            "and binds tighter than or"
        );
        assert!(
            !allows("not role:a and role:b", &["a", "b"]),
            "not binds tightest"
        );
        assert!(allows("project_id:p1", &[]));
        assert!(!allows("project_id:p2", &[]));
        assert!(allows("user_id:u1", &[]));
        assert!(allows("roles:member", &["Member"]));
        assert!(allows("is_admin:True", &["admin"]));
        assert!(!allows("is_admin:True", &["member"]));
        assert!(allows("'x':x", &[]));
        assert!(!allows("'x':y", &[]));
        assert!(!allows("no_such_credential:x", &[]));
    }

    #[test]
    fn target_is_empty_as_in_the_reference() {
        // Owner-style rules never match: the target has no project_id.
        assert!(!allows("project_id:%(project_id)s", &["member"]));
        assert!(allows(
            "is_admin:True or project_id:%(project_id)s",
            &["admin"]
        ));
        assert!(!Policy::default().allows("admin_or_owner", &ctx(&["member"])));
    }

    #[test]
    fn rules_refer_to_rules() {
        let p = Policy::from_rules([
            ("queues:delete", "rule:context_is_admin"),
            ("a", "rule:b or role:x"),
            ("b", "role:y"),
        ])
        .unwrap();
        assert!(!p.allows("queues:delete", &ctx(&["member"])));
        assert!(p.allows("queues:delete", &ctx(&["admin"])));
        assert!(p.allows("a", &ctx(&["y"])));
        assert!(
            p.allows("queues:create", &ctx(&[])),
            "defaults stay in force"
        );
    }

    #[test]
    fn errors_name_the_rule() {
        for (text, needle) in [
            ("role:admin or", "ends too early"),
            ("(role:admin", "missing ')'"),
            ("role:admin)", "unexpected"),
            ("admin", "is not a check"),
            ("role:", "nothing after"),
            ("rule:missing", "names no rule"),
            ("http://example.com", "not supported"),
            ("role:a role:b", "unexpected"),
        ] {
            let err = Policy::from_rules([("queues:delete", text)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("\"queues:delete\""), "{text}: {err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = Policy::from_rules([("a", "rule:b"), ("b", "rule:a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("loop"), "{err}");
    }

    #[test]
    fn files_yaml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("policy.yaml");
        std::fs::write(
            &yaml,
            "# ops\n\"queues:delete\": \"role:admin\"\nhealth:get: ''\n",
        )
        .unwrap();
        let p = Policy::from_file(&yaml).unwrap();
        assert!(!p.allows("queues:delete", &ctx(&["member"])));
        assert!(p.allows("health:get", &ctx(&[])));
        let json = dir.path().join("policy.json");
        std::fs::write(&json, r#"{"queues:create": "!"}"#).unwrap();
        assert!(!Policy::from_file(&json)
            .unwrap()
            .allows("queues:create", &ctx(&["admin"])));
        std::fs::write(&json, r#"{"queues:create": ["role:a"]}"#).unwrap();
        let err = Policy::from_file(&json).unwrap_err().to_string();
        assert!(
            err.contains("queues:create") && err.contains("string"),
            "{err}"
        );
        std::fs::write(&json, "{not yaml").unwrap();
        assert!(matches!(
            Policy::from_file(&json),
            Err(PolicyError::Read { .. })
        ));
        std::fs::write(&yaml, "").unwrap();
        assert!(Policy::from_file(&yaml)
            .unwrap()
            .allows("queues:create", &ctx(&[])));
    }

    #[test]
    fn the_sample_policy_is_the_defaults() {
        let sample = sample_policy();
        let uncommented: String = sample
            .lines()
            .filter(|l| l.starts_with("#\""))
            .map(|l| format!("{}\n", &l[1..]))
            .collect();
        let doc: BTreeMap<String, String> = serde_norway::from_str(&uncommented).unwrap();
        assert_eq!(doc.len(), DEFAULT_RULES.len());
        for (name, check) in DEFAULT_RULES {
            assert_eq!(doc[*name], *check);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, &uncommented).unwrap();
        let p = Policy::from_file(&file).unwrap();
        assert!(!p.allows("pools:create", &ctx(&[])));
        assert!(p.allows("pools:create", &ctx(&["admin"])));
    }

    #[test]
    fn load_looks_next_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            config_dir: Some(dir.path().to_owned()),
            ..Config::default()
        };
        assert!(
            Policy::load(&config).unwrap().source().is_none(),
            "no file: defaults"
        );
        std::fs::write(dir.path().join("policy.yaml"), "queues:get_all: '!'\n").unwrap();
        let p = Policy::load(&config).unwrap();
        assert!(!p.allows("queues:get_all", &ctx(&[])));
        config
            .sections
            .entry("oslo_policy".into())
            .or_default()
            .insert("policy_file".into(), "other.json".into());
        assert!(matches!(
            Policy::load(&config),
            Err(PolicyError::Read { .. })
        ));
        std::fs::write(dir.path().join("other.json"), r#"{"ping:get": "role:x"}"#).unwrap();
        let p = Policy::load(&config).unwrap();
        assert!(!p.allows("ping:get", &ctx(&[])));
        assert!(p.allows("queues:get_all", &ctx(&[])));
    }
}
