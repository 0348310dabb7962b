//! The limits and domain lists a write body is checked against ([`BodyRules`], from the
//! config), with the built-in free-mail list.

use std::collections::HashSet;

/// Limits and domain lists for create bodies. `Default` gives the documented defaults and the
/// built-in free-mail list ([`default_free_mail_domains`]); `own_domains` starts empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRules {
    /// Maximum length of `name`, in characters (default 200).
    pub max_name_len: usize,
    /// Maximum number of entries in `emails` (default 50).
    pub max_emails: usize,
    /// Maximum length, in characters, of `firstName`, `lastName` and custom-field text values
    /// (default 500).
    pub max_string_len: usize,
    /// Maximum number of items in `tags`, `assignedUsers`, `customFields`, `emails[].tags` and
    /// `multi_select` values (default 100).
    pub max_array_len: usize,
    /// Let unknown keys through (top level, e-mail objects, custom-field objects) instead of
    /// rejecting them (default false).
    pub allow_unknown_fields: bool,
    /// Lowercase free-mail domains; an address on one of them is not a business address.
    pub free_mail_domains: HashSet<String>,
    /// Lowercase domains of the company itself; an address on one of them, or on a subdomain of
    /// one, would be a partnership with self.
    pub own_domains: HashSet<String>,
}

impl Default for BodyRules {
    fn default() -> Self {
        Self {
            max_name_len: 200,
            max_emails: 50,
            max_string_len: 500,
            max_array_len: 100,
            allow_unknown_fields: false,
            free_mail_domains: default_free_mail_domains()
                .into_iter()
                .map(str::to_string)
                .collect(),
            own_domains: HashSet::new(),
        }
    }
}

/// The built-in list of consumer (free-mail) domains, lowercase. Deliberately short and
/// well-known: a false positive blocks a real partner, so the list is configurable and this is
/// only a sensible starting point.
pub fn default_free_mail_domains() -> Vec<&'static str> {
    vec![
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.co.in",
        "yahoo.co.jp",
        "yahoo.com.au",
        "yahoo.ca",
        "yahoo.de",
        "yahoo.es",
        "yahoo.fr",
        "yahoo.it",
        "ymail.com",
        "rocketmail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "live.com",
        "live.co.uk",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "mail.com",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "zoho.com",
        "fastmail.com",
        "hey.com",
        "tutanota.com",
        "tuta.io",
        "web.de",
        "qq.com",
        "163.com",
        "naver.com",
    ]
}
