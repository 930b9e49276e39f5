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
    "AUTHORIZATION",
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

/// Last tokens that name something about a secret rather than the secret itself
/// (`KEY_PREFIX`, `TOKEN_TTL_SECONDS`, `DB_PASSWORD_FILE`, `AWS_ACCESS_KEY_ID`).
const NOT_THE_SECRET: &[&str] = &[
    "TTL",
    "PREFIX",
    "SUFFIX",
    "SIZE",
    "LEN",
    "LENGTH",
    "BITS",
    "TIMEOUT",
    "EXPIRY",
    "EXPIRES",
    "EXPIRATION",
    "LIFETIME",
    "AGE",
    "SECONDS",
    "SECS",
    "MINUTES",
    "HOURS",
    "DAYS",
    "MS",
    "COUNT",
    "MAX",
    "MIN",
    "LIMIT",
    "INTERVAL",
    "PATH",
    "FILE",
    "DIR",
    "NAME",
    "ID",
    "TYPE",
    "HEADER",
    "ALGORITHM",
    "ALG",
    "VERSION",
    "ENABLED",
    "DISABLED",
    "REQUIRED",
    "MODE",
    "URL",
    "ENDPOINT",
    "FORMAT",
    "FIELD",
    "PARAM",
    "ROTATION",
    "POLICY",
];

/// A name's tokens, upper case: split at anything not a letter or digit, and where a lower
/// case letter meets an upper case one (`stripeSecretKey` is STRIPE SECRET KEY).
fn name_tokens(name: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (prev_lower && c.is_ascii_uppercase());
        if boundary && !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
        if c.is_ascii_alphanumeric() {
            current.push(c.to_ascii_uppercase());
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Whether a variable (or flag) name says its value is secret: a secret word among its
/// tokens, unless its last token says the value is about the secret (a TTL, a file path).
pub fn secret_name(name: &str) -> bool {
    let tokens = name_tokens(name);
    let secret = |t: &String| {
        SECRET_WORDS.contains(&t.as_str()) || SECRET_ENDINGS.iter().any(|e| t.ends_with(e))
    };
    match tokens.split_last() {
        Some((last, _)) if NOT_THE_SECRET.contains(&last.as_str()) => false,
        _ => tokens.iter().any(secret),
    }
}

/// Whether an `env` entry is treated as a secret: by its name or by its value's shape.
pub fn secret_env(name: &str, value: &str) -> bool {
    secret_name(name) || !value_secrets(value).is_empty()
}

/// The parts of `value` to mask when it has a secret shape: the whole value, and each
/// password or secret parameter on its own (so it is caught wherever it shows up).
pub fn value_secrets(value: &str) -> Vec<String> {
    let creds = credentials(value);
    let mut params = secret_params(value);
    params.extend(auth_schemes(value));
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

/// The credential after `Bearer ` or `Basic ` (an `Authorization` header's value).
fn auth_schemes(value: &str) -> Vec<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| {
            let scheme = w[0]
                .trim_start_matches("Authorization:")
                .to_ascii_lowercase();
            (scheme == "bearer" || scheme == "basic") && w[1].len() >= 8
        })
        .map(|w| w[1].to_string())
        .collect()
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

/// A command line as output shows it: its arguments quoted, each secret in it (see
/// `command_secrets`) as `<secret>`. The secrets are found in `args` itself, so a command
/// read back from a container masks what bgd.yaml no longer says too.
pub fn shown_command(args: &[String]) -> String {
    let secrets = command_secrets(args);
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            let mut a = a.clone();
            for s in secrets.iter().filter(|s| !s.is_empty()) {
                a = a.replace(s.as_str(), "<secret>");
            }
            format!("{a:?}")
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

/// The secrets in a command line: the value of a secret flag (`--password=X`,
/// `--token X`, `DB_PASSWORD=X`), and any argument of a secret shape.
pub fn command_secrets(args: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut next_is_secret = false;
    for arg in args {
        // the value after a secret flag, unless it is the next flag
        if std::mem::take(&mut next_is_secret) && !arg.starts_with('-') {
            found.push(arg.clone());
            continue;
        }
        found.extend(value_secrets(arg));
        let flag = arg.trim_start_matches('-');
        match flag.split_once('=') {
            Some((name, value)) if secret_name(name) && !value.is_empty() => {
                found.push(value.to_string())
            }
            // `--no-auth` is a switch, not a flag with a value
            None if arg.starts_with('-') && !flag.starts_with("no-") && secret_name(flag) => {
                next_is_secret = true
            }
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
            "stripeSecretKey",
            "privateKey",
            "SECRET_KEY_BASE",
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
            "KEY_PREFIX",
            "CACHE_KEY_TTL",
            "TOKEN_TTL_SECONDS",
            "DB_PASSWORD_FILE",
            "keyboardLayout",
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
        // a switch, and a secret flag followed by another flag, mask nothing
        assert!(command_secrets(&args(&["./app", "--no-auth", "migrate"])).is_empty());
        assert!(command_secrets(&args(&["./app", "--token", "--verbose"])).is_empty());
        assert_eq!(
            command_secrets(&args(&["curl", "-H", "Authorization: Bearer abcdef123456"])),
            ["Authorization: Bearer abcdef123456", "abcdef123456"]
        );
        assert_eq!(
            shown_command(&args(&["./migrate", "--password=hu\"nter22", "up"])),
            r#"["./migrate", "--password=<secret>", "up"]"#
        );
    }
}
