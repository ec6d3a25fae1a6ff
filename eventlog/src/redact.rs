//! Database URLs as they may be shown: every place a password can be in
//! one (the user information, a secret query parameter) masked, and a
//! driver's message that quotes one scrubbed.

/// Hides the password of a `scheme://user:password@host` URL.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        // The user information ends at the last `@`: a password may hold one.
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((creds, host)) => match creds.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
                None => format!("{scheme}://{creds}@{host}"),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_parameter(k) => format!("{k}=<redacted>"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// `text` (a driver's error message, say) with every secret `url` holds
/// masked, as written and percent-decoded.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for secret in url_secrets(url) {
        if !secret.is_empty() {
            out = out.replace(&secret, "<redacted>");
        }
    }
    out
}

fn decoded(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
}

/// The password of a URL's user information and the values of its secret
/// query parameters.
fn url_secrets(url: &str) -> Vec<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut secrets = Vec::new();
    if let Some((_, rest)) = base.split_once("://")
        && let Some((creds, _)) = rest.rsplit_once('@')
        && let Some((_, password)) = creds.split_once(':')
    {
        secrets.push(password.to_owned());
        secrets.push(decoded(password));
    }
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && is_secret_parameter(k)
        {
            secrets.push(v.to_owned());
            secrets.push(decoded(v));
        }
    }
    // Longest first, so that a secret holding another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// Query parameters of a database URL that carry a secret.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("password") || name == "pass" || name == "pwd" || name.ends_with("secret")
}
