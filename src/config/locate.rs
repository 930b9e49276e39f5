//! Finds where a key path (`smoke[1].expect.status`) stands in the YAML text, so semantic
//! errors can name a line and column as parse errors do. Block style is followed exactly;
//! for flow style (`{ a: 1 }`) the nearest enclosing key is returned.

#[derive(Debug, PartialEq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

struct Line<'a> {
    /// column of the first character that is neither a space nor a sequence dash
    key_col: usize,
    /// column of a leading `- `, if the line starts a sequence item
    dash_col: Option<usize>,
    text: &'a str,
}

fn parse_line(raw: &str) -> Option<Line<'_>> {
    let trimmed = raw.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let indent = raw.len() - trimmed.len();
    let mut col = indent;
    let mut rest = trimmed;
    let mut dash_col = None;
    while let Some(r) = rest
        .strip_prefix("- ")
        .or(if rest == "-" { Some("") } else { None })
    {
        dash_col.get_or_insert(col);
        let r2 = r.trim_start();
        col += rest.len() - r2.len();
        rest = r2;
    }
    Some(Line {
        key_col: col,
        dash_col,
        text: rest,
    })
}

fn is_key(text: &str, key: &str) -> bool {
    for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
        if let Some(after) = text.strip_prefix(&quoted) {
            if after.trim_start().starts_with(':') {
                return true;
            }
        }
    }
    false
}

/// 1-based (line, column) of the deepest part of `path` found in `text`.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<Option<Line>> = text.lines().map(parse_line).collect();
    let (mut start, mut end) = (0usize, lines.len());
    // Children of the current node have their key or dash column above this.
    let mut parent_col: isize = -1;
    let mut found = None;
    for seg in segments(path) {
        match seg {
            Seg::Key(key) => {
                // the child level is the smallest key column in range above the parent
                let level = (start..end)
                    .filter_map(|i| lines[i].as_ref())
                    .map(|l| l.key_col)
                    .filter(|&c| c as isize > parent_col)
                    .min()?;
                let hit = (start..end).find(|&i| {
                    lines[i]
                        .as_ref()
                        .is_some_and(|l| l.key_col == level && is_key(l.text, key))
                })?;
                found = Some((hit + 1, level + 1));
                let stop = (hit + 1..end)
                    .find(|&i| lines[i].as_ref().is_some_and(|l| l.key_col <= level))
                    .unwrap_or(end);
                // a dash on a later line at or left of our key ends the item too
                start = hit;
                end = stop;
                parent_col = level as isize;
                // the key's own line holds only its value; children start below it
                start += 1;
                if start >= end {
                    return found;
                }
            }
            Seg::Index(n) => {
                let level = (start..end)
                    .filter_map(|i| lines[i].as_ref())
                    .filter_map(|l| l.dash_col)
                    .filter(|&c| c as isize > parent_col)
                    .min()?;
                let items: Vec<usize> = (start..end)
                    .filter(|&i| lines[i].as_ref().is_some_and(|l| l.dash_col == Some(level)))
                    .collect();
                let hit = *items.get(n)?;
                let stop = items.get(n + 1).copied().unwrap_or(end);
                found = Some((hit + 1, level + 1));
                start = hit;
                end = stop;
                parent_col = level as isize;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::locate;

    const DOC: &str = "app: web\ncontainer:\n  port: 8080\n  env: { A: b }\nsmoke:\n  - name: home\n    path: /\n    expect:\n      status: [200]\n  - name: api\n    path: /api\n    expect:\n      status: [600]\nlb:\n  listen: 80\n";

    #[test]
    fn finds_nested_keys_and_items() {
        assert_eq!(locate(DOC, "app"), Some((1, 1)));
        assert_eq!(locate(DOC, "container.port"), Some((3, 3)));
        assert_eq!(locate(DOC, "smoke[0].name"), Some((6, 5)));
        assert_eq!(locate(DOC, "smoke[1].path"), Some((11, 5)));
        assert_eq!(locate(DOC, "smoke[1].expect.status"), Some((13, 7)));
        assert_eq!(locate(DOC, "lb.listen"), Some((15, 3)));
        // flow style: the enclosing key
        assert_eq!(locate(DOC, "container.env.A"), Some((4, 3)));
        assert_eq!(locate(DOC, "nope"), None);
    }
}
