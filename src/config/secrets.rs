//! What counts as a secret in bgd.yaml, so that output, the plan and the history never show
//! it. By name: a variable whose name has a secret word as one of its tokens (`DB_PASSWORD`,
//! `MYSQL_PWD`, `STRIPE_SK`, `AWS_SECRET_ACCESS_KEY`; not `AUTHOR`, `MONKEY` or
//! `KEYBOARD_LAYOUT`). By shape, whatever the name: a URL or DSN carrying credentials
//! (`postgres://u:pw@db/x`, `u:pw@tcp(db:3306)/x`) and `password=`/`token=`-like parameters.
//! Commands are read the same way: `--password=X`, `--token X`, and any argument of a
//! secret shape.

/// Name tokens that make a variable or a flag secret.
const SECRET_WORDS: &[&str] = &[
    "SECRET",
    "SECRETS",
    "TOKEN",
    "TOKENS",
    "PASSWORD",
    "PASSWORDS",
    "PASSWD",
    "PASS",
    "PWD",
    "PASSPHRASE",
    "KEY",
    "APIKEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "AUTH",
    "PRIVATE",
    "DSN",
    "SK",
    "SALT",
    "SIGNATURE",
];

/// Endings of a longer token that make it secret too (`DBPASSWORD`, `GITHUBTOKEN`).
const SECRET_ENDINGS: &[&str] = &["PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY"];

/// Parameter names whose value is a secret in a query string or a connection string.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "token",
    "access_token",
    "secret",
    "api_key",
    "apikey",
    "key",
    "auth",
    "sig",
    "signature",
];

/// Whether a variable (or flag) name says its value is secret.
pub fn secret_name(name: &str) -> bool {
    name.to_ascii_uppercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .any(|t| SECRET_WORDS.contains(&t) || SECRET_ENDINGS.iter().any(|e| t.ends_with(e)))
}

/// Whether an `env` entry is treated as a secret: by its name or by its value's shape.
pub fn secret_env(name: &str, value: &str) -> bool {
    secret_name(name) || !value_secrets(value).is_empty()
}

/// The parts of `value` to mask when it has a secret shape: the whole value, and each
/// password or secret parameter on its own (so it is caught wherever it shows up).
pub fn value_secrets(value: &str) -> Vec<String> {
    let creds = credentials(value);
    let params = secret_params(value);
    if creds.is_empty() && params.is_empty() {
        return Vec::new();
    }
    let mut parts = vec![value.to_string()];
    parts.extend(creds.into_iter().flatten());
    parts.extend(params);
    parts
}

/// The credentials in a URL or a DSN: `Some(password)` for each `user:password@`, `None`
/// for a `scheme://user@` (a user name alone still makes the value a credential).
fn credentials(value: &str) -> Vec<Option<String>> {
    let mut found = Vec::new();
    for (at, _) in value.match_indices('@') {
        let before = &value[..at];
        let start = before
            .rfind(|c: char| c == '/' || c.is_whitespace())
            .map_or(0, |i| i + 1);
        let creds = &before[start..];
        match creds.split_once(':') {
            Some((_, pw)) if !pw.is_empty() => found.push(Some(pw.to_string())),
            None if !creds.is_empty() && before[..start].ends_with("//") => found.push(None),
            _ => {}
        }
    }
    found
}

/// Values of `password=`-like parameters (`?password=x`, `;Password=x;`, `token=x`).
fn secret_params(value: &str) -> Vec<String> {
    let mut found = Vec::new();
    for piece in value.split(['?', '&', ';', ' ']) {
        let Some((k, v)) = piece.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        if !v.is_empty() && SECRET_PARAMS.contains(&k.as_str()) {
            found.push(v.trim().to_string());
        }
    }
    found
}

/// The secrets in a command line: the value of a secret flag (`--password=X`,
/// `--token X`, `DB_PASSWORD=X`), and any argument of a secret shape.
pub fn command_secrets(args: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut next_is_secret = false;
    for arg in args {
        if std::mem::take(&mut next_is_secret) {
            found.push(arg.clone());
            continue;
        }
        found.extend(value_secrets(arg));
        let flag = arg.trim_start_matches('-');
        match flag.split_once('=') {
            Some((name, value)) if secret_name(name) && !value.is_empty() => {
                found.push(value.to_string())
            }
            None if arg.starts_with('-') && secret_name(flag) => next_is_secret = true,
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_token() {
        for secret in [
            "DB_PASSWORD",
            "MYSQL_PWD",
            "STRIPE_SK",
            "API_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUBTOKEN",
            "db_password",
            "SENTRY_DSN",
            "JWT_KEY",
        ] {
            assert!(secret_name(secret), "{secret}");
        }
        for plain in [
            "AUTHOR",
            "MONKEY",
            "KEYBOARD_LAYOUT",
            "LOG_LEVEL",
            "PASSENGER",
            "SKIP",
        ] {
            assert!(!secret_name(plain), "{plain}");
        }
    }

    #[test]
    fn values_by_shape() {
        assert_eq!(
            value_secrets("postgres://shop:pw1234@db:5432/shop"),
            ["postgres://shop:pw1234@db:5432/shop", "pw1234"]
        );
        assert_eq!(
            value_secrets("shop:hunter22@tcp(db:3306)/shop"),
            ["shop:hunter22@tcp(db:3306)/shop", "hunter22"]
        );
        assert_eq!(
            value_secrets("https://api.example.com/v1?user=a&password=s3cr3t"),
            [
                "https://api.example.com/v1?user=a&password=s3cr3t",
                "s3cr3t"
            ]
        );
        assert_eq!(
            value_secrets("Server=db;User Id=sa;Password=Passw0rd!;"),
            ["Server=db;User Id=sa;Password=Passw0rd!;", "Passw0rd!"]
        );
        assert_eq!(value_secrets("redis://:pw99@cache:6379/0")[1], "pw99");
        assert!(!value_secrets("ssh://git@github.com/x").is_empty());
        for plain in [
            "postgres://db:5432/shop",
            "https://example.com/a@b",
            "info",
            "shop",
            "a=b",
        ] {
            assert!(value_secrets(plain).is_empty(), "{plain}");
        }
        assert!(secret_env(
            "DATABASE_URL",
            "postgres://shop:pw@db:5432/shop"
        ));
        assert!(!secret_env("AUTHOR", "shop"));
    }

    #[test]
    fn commands() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_secrets(&args(&["./migrate", "--password=hunter22", "up"])),
            ["hunter22"]
        );
        assert_eq!(
            command_secrets(&args(&["./migrate", "--db-token", "t0k3n", "up"])),
            ["t0k3n"]
        );
        assert_eq!(
            command_secrets(&args(&["migrate", "postgres://u:pw77@db/x"])),
            ["postgres://u:pw77@db/x", "pw77"]
        );
        assert!(
            command_secrets(&args(&["./server", "--port", "8080", "--keyboard", "us"])).is_empty()
        );
    }
}
