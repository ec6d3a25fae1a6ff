//! The pages people see, rendered on the server: signing in, consenting,
//! messages (errors, sign-out). Every value is HTML-escaped by askama; the
//! templates are in `templates/`, the style sheet and the passkey script
//! are served as they are here.
//!
//! A template edit recompiles only this crate.

#![forbid(unsafe_code)]

use askama::Template;

/// The style sheet every page links (`/assets/pages.css`). Colours keep
/// WCAG AA contrast: text #1f2328 on white is 15.8:1, the error red
/// #a4000f on #fdecee 7.4:1, the default accent #1a56db on white 6.1:1.
pub const STYLESHEET: &str = include_str!("../assets/pages.css");

/// The passkey step of the sign-in page (`/assets/passkey.js`): the only
/// script, asking the browser's WebAuthn API through the flow API.
pub const PASSKEY_SCRIPT: &str = include_str!("../assets/passkey.js");

/// An organization's look: its name, logo and accent colour.
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub accent: String,
    /// Black or white, whichever reads better on the accent.
    pub on_accent: &'static str,
    pub lang: String,
}

/// The default accent colour.
pub const DEFAULT_ACCENT: &str = "#1a56db";

impl Theme {
    /// A theme named `name`; an accent that is not `#rrggbb` is replaced
    /// by the default, and the text on it is chosen for contrast.
    pub fn new(name: &str, logo_url: Option<String>, accent: Option<&str>, lang: &str) -> Self {
        let accent = accent
            .filter(|a| parse_hex(a).is_some())
            .unwrap_or(DEFAULT_ACCENT)
            .to_ascii_lowercase();
        let on_accent = match parse_hex(&accent) {
            Some(rgb) if contrast(rgb, [255, 255, 255]) >= contrast(rgb, [0, 0, 0]) => "#ffffff",
            _ => "#000000",
        };
        let logo_url = logo_url.filter(|u| u.starts_with("https://"));
        Self {
            name: name.to_owned(),
            logo_url,
            accent,
            on_accent,
            lang: if lang.is_empty() {
                "en".into()
            } else {
                lang.to_owned()
            },
        }
    }
}

/// `#rrggbb` as three bytes.
pub fn parse_hex(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// WCAG 2 relative luminance.
fn luminance(rgb: [u8; 3]) -> f64 {
    let channel = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])
}

/// WCAG 2 contrast ratio of two colours (1 to 21).
pub fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

/// A button that sends a one-time code.
#[derive(Debug, Clone)]
pub struct CodeChoice {
    pub method: &'static str,
    pub label: &'static str,
}

/// The sign-in page: whichever of its parts the next step may use.
#[derive(Template)]
#[template(path = "login.html")]
pub struct Login<'a> {
    pub theme: &'a Theme,
    pub client_name: Option<String>,
    pub sign_in: String,
    pub csrf: String,
    /// Prefilled, or the person already identified.
    pub identifier: String,
    pub ask_identifier: bool,
    pub password: bool,
    pub totp: bool,
    pub send_code: Vec<CodeChoice>,
    pub passkey: bool,
    /// The channel a code was just sent by, to enter it.
    pub code_sent: Option<&'static str>,
    pub error: Option<String>,
    pub notice: Option<String>,
    /// Offer to start over (the sign-in expired or was lost).
    pub restart: bool,
    pub restart_href: String,
}

/// The consent screen.
#[derive(Template)]
#[template(path = "consent.html")]
pub struct Consent<'a> {
    pub theme: &'a Theme,
    pub client_name: String,
    pub user_name: String,
    /// Each requested scope in words.
    pub scopes: Vec<String>,
    pub csrf: String,
    /// The authorization request, carried to the decision.
    pub params: Vec<(String, String)>,
}

/// A form a message page offers (a confirmation).
#[derive(Debug, Clone)]
pub struct MessageForm {
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub button: String,
}

/// A page that says one thing: an error, or that someone signed out.
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub theme: &'a Theme,
    pub title: String,
    pub message: String,
    pub is_error: bool,
    pub form: Option<MessageForm>,
    pub link: Option<Link>,
}

/// A link a message page offers.
#[derive(Debug, Clone)]
pub struct Link {
    pub href: String,
    pub text: String,
}

/// Renders a page; a template cannot fail on these plain values, but if it
/// did the error is said plainly rather than a blank page.
pub fn render(page: &impl Template) -> String {
    page.render()
        .unwrap_or_else(|e| format!("<!doctype html><title>Error</title><p>{e}</p>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn theme() -> Theme {
        Theme::new("Acme <Corp>", None, None, "en")
    }

    #[test]
    fn default_colours_meet_wcag_aa() {
        let white = [255, 255, 255];
        let accent = parse_hex(DEFAULT_ACCENT).unwrap_or_default();
        assert!(contrast(accent, white) >= 4.5);
        assert!(contrast([0x1f, 0x23, 0x28], white) >= 4.5);
        assert!(contrast([0xa4, 0x00, 0x0f], [0xfd, 0xec, 0xee]) >= 4.5);
        // A light accent gets dark text.
        let t = Theme::new("x", None, Some("#ffe066"), "en");
        assert_eq!(t.on_accent, "#000000");
        // Anything but #rrggbb (a way into the style sheet) is refused.
        let t = Theme::new("x", None, Some("red;}body{display:none"), "en");
        assert_eq!(t.accent, DEFAULT_ACCENT);
    }

    #[test]
    fn pages_escape_what_they_show_and_label_every_field() {
        let t = theme();
        let html = render(&Login {
            theme: &t,
            client_name: Some("<script>x</script>".into()),
            sign_in: "s".into(),
            csrf: "c".into(),
            identifier: String::new(),
            ask_identifier: true,
            password: true,
            totp: false,
            send_code: vec![CodeChoice {
                method: "email",
                label: "Email me a code",
            }],
            passkey: true,
            code_sent: None,
            error: Some("wrong \"password\"".into()),
            notice: None,
            restart: false,
            restart_href: String::new(),
        });
        assert!(!html.contains("<script>x"));
        assert!(html.contains("Acme &#60;Corp&#62;") || html.contains("Acme &lt;Corp&gt;"));
        assert!(html.contains(r#"<meta name="robots" content="noindex, nofollow">"#));
        for id in ["identifier", "password"] {
            assert!(
                html.contains(&format!(r#"<label for="{id}">"#)),
                "{id} has a label"
            );
            assert!(html.contains(&format!(r#"id="{id}""#)));
        }
        assert!(html.contains(r#"role="alert""#));
    }
}
