//! `[validation]`: the create-body rules.

use super::raw::RawValidation;
use super::Problems;
use crate::validate::body::{default_free_mail_domains, BodyRules};
use std::collections::HashSet;

pub(super) fn validate_body_rules(raw: &RawValidation, p: &mut Problems) -> BodyRules {
    let mut rules = BodyRules::default();
    let lower = |v: &[String]| -> HashSet<String> {
        v.iter().map(|d| d.trim().to_ascii_lowercase()).collect()
    };
    if let Some(v) = raw.allow_unknown_fields {
        rules.allow_unknown_fields = v;
    }
    if let Some(list) = &raw.free_mail_domains {
        rules.free_mail_domains = lower(list);
    } else {
        rules.free_mail_domains = default_free_mail_domains()
            .into_iter()
            .map(str::to_string)
            .collect();
    }
    if let Some(extra) = &raw.extra_free_mail_domains {
        rules.free_mail_domains.extend(lower(extra));
    }
    if let Some(own) = &raw.own_domains {
        rules.own_domains = lower(own);
    }
    for (path, list) in [
        ("validation.free_mail_domains", &raw.free_mail_domains),
        (
            "validation.extra_free_mail_domains",
            &raw.extra_free_mail_domains,
        ),
        ("validation.own_domains", &raw.own_domains),
    ] {
        for (i, d) in list.iter().flatten().enumerate() {
            if d.trim().is_empty() || d.contains('@') || !d.contains('.') {
                p.push(
                    format!("{path}[{i}]"),
                    format!("{d:?} is not a domain name"),
                );
            }
        }
    }
    if let Some(n) = raw.max_name_length {
        if n == 0 {
            p.push("validation.max_name_length", "must be greater than zero");
        }
        rules.max_name_len = n;
    }
    if let Some(n) = raw.max_emails {
        if n == 0 {
            p.push("validation.max_emails", "must be greater than zero");
        }
        rules.max_emails = n;
    }
    rules
}
