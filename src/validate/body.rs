//! TEMPORARY STUB (replaced by the real validator).
use super::FieldError;
use std::collections::HashSet;
#[derive(Debug, Clone)]
pub struct BodyRules { pub max_name_len: usize, pub max_emails: usize, pub max_string_len: usize, pub max_array_len: usize, pub allow_unknown_fields: bool, pub free_mail_domains: HashSet<String>, pub own_domains: HashSet<String> }
impl Default for BodyRules { fn default() -> Self { Self { max_name_len: 200, max_emails: 50, max_string_len: 500, max_array_len: 100, allow_unknown_fields: false, free_mail_domains: HashSet::new(), own_domains: HashSet::new() } } }
pub fn default_free_mail_domains() -> Vec<&'static str> { vec!["gmail.com"] }
#[derive(Debug)]
pub enum BodyRejection { InvalidJson(String), NotAnObject, Schema(Vec<FieldError>), Domain(Vec<FieldError>) }
impl BodyRejection {
  pub fn summary(&self) -> &'static str { "x" }
  pub fn details(&self) -> &[FieldError] { match self { Self::Schema(v) | Self::Domain(v) => v, _ => &[] } }
  pub fn reason(&self) -> &'static str { "schema" }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)] pub enum PartnerType { Referral, Reseller }
#[derive(Debug, Clone)]
pub struct CreateSummary { pub name: String, pub email_domain: String, pub partner_type: PartnerType, pub inactive: bool, pub emails: usize }
pub fn validate_create(_body: &[u8], _rules: &BodyRules) -> Result<CreateSummary, BodyRejection> { Err(BodyRejection::NotAnObject) }
