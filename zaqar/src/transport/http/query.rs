//! Query strings the way the reference's framework reads them: blank values
//! dropped, comma-separated lists, its boolean words and its error texts.

use crate::error::{ApiError, ApiResult};

/// Parsed query parameters, in the order they were given.
#[derive(Clone, Debug, Default)]
pub struct Query {
    params: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (without `?`).
    pub fn parse(raw: &str) -> Self {
        let params = form_urlencoded::parse(raw.as_bytes())
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Query { params }
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameters not named in `known`, each once (its last value),
    /// in the order first given.
    pub fn others(&self, known: &[&str]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.params {
            if known.contains(&k.as_str()) {
                continue;
            }
            match out.iter_mut().find(|(seen, _)| seen == k) {
                Some(entry) => entry.1.clone_from(v),
                None => out.push((k.clone(), v.clone())),
            }
        }
        out
    }

    /// A comma-separated list (every occurrence of `name` joined).
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let mut out: Option<Vec<String>> = None;
        for (k, v) in &self.params {
            if k == name {
                out.get_or_insert_with(Vec::new).extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
            }
        }
        out
    }

    /// An integer parameter. An integer too large for i64 saturates, so
    /// that the operation's own range check answers it (the reference's
    /// integers have no size).
    pub fn int(&self, name: &str) -> ApiResult<Option<i64>> {
        use std::num::IntErrorKind;
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) => Ok(Some(n)),
                Err(e) if *e.kind() == IntErrorKind::PosOverflow => Ok(Some(i64::MAX)),
                Err(e) if *e.kind() == IntErrorKind::NegOverflow => Ok(Some(i64::MIN)),
                Err(_) => Err(ApiError::bad_request(
                    "Invalid parameter",
                    format!("The \"{name}\" parameter is invalid. The value must be an integer."),
                )),
            },
        }
    }

    /// A boolean parameter (`true True t yes y 1 on` / `false False f no n 0 off`).
    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some("true" | "True" | "t" | "yes" | "y" | "1" | "on") => Ok(Some(true)),
            Some("false" | "False" | "f" | "no" | "n" | "0" | "off") => Ok(Some(false)),
            Some(_) => Err(ApiError::bad_request(
                "Invalid parameter",
                format!(
                    "The \"{name}\" parameter is invalid. The value of the parameter must be \"true\" or \"false\"."
                ),
            )),
        }
    }
}

/// Builds `?k=v&...` from ordered pairs, as the reference renders next links.
pub fn to_query_string(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from("?");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_lists_and_booleans() {
        let q = Query::parse("ids=a,b&ids=c&marker=&detailed&echo=yes&limit=x");
        assert_eq!(q.list("ids").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(q.get("marker"), None);
        assert_eq!(q.bool("detailed").unwrap(), None);
        assert_eq!(q.bool("echo").unwrap(), Some(true));
        assert!(q.int("limit").is_err());
        assert!(Query::parse("echo=maybe").bool("echo").is_err());
    }

    #[test]
    fn other_parameters_once_each() {
        let q = Query::parse("limit=2&node=31&x=a&node=32&name=q");
        assert_eq!(
            q.others(&["limit", "name"]),
            vec![("node".into(), "32".into()), ("x".into(), "a".into())]
        );
    }

    #[test]
    fn integers_as_python_reads_them() {
        let int = |v: &str| Query::parse(&format!("limit={v}")).int("limit");
        assert_eq!(int("+5").unwrap(), Some(5));
        assert_eq!(int("%205%20").unwrap(), Some(5));
        assert_eq!(int("-3").unwrap(), Some(-3));
        // Too large for i64: saturated, for the range check to refuse.
        assert_eq!(int("99999999999999999999").unwrap(), Some(i64::MAX));
        assert_eq!(int("-99999999999999999999").unwrap(), Some(i64::MIN));
        // ('+' in a query is a space: "%2B%2B5" is a literal "++5".)
        for bad in ["%2B%2B5", "5.0", "5%205", "0x10", "1e3"] {
            assert!(int(bad).is_err(), "{bad}");
        }
    }
}
