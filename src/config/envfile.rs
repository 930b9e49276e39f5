//! `container.env_file`: KEY=VALUE lines. The values are secrets: they live in `Secret`s,
//! whose Debug and Display never show them.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
    /// The value itself, for the one place that needs it: the container's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Parses an env file. Errors name the line but never echo the value.
pub fn parse(text: &str) -> Result<Vec<(String, Secret)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE", i + 1));
        };
        let key = key.trim();
        if !valid_env_name(key) {
            return Err(format!(
                "line {}: {key:?} is not a valid variable name",
                i + 1
            ));
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        out.push((key.to_string(), Secret::new(value)));
    }
    Ok(out)
}

pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hides() {
        let v = parse("# c\nA=1\nexport B=\"two words\"\n\nC='x=y'\n").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].1.expose(), "two words");
        assert_eq!(v[2].1.expose(), "x=y");
        assert_eq!(format!("{:?}", v[0].1), "<secret>");
        let err = parse("A=1\nnot a pair hunter2\n").unwrap_err();
        assert!(err.contains("line 2"));
        assert!(!err.contains("hunter2"));
    }
}
