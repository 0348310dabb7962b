//! TEMPORARY STUB (replaced by the real validator).
use super::FieldError;
#[derive(Debug, Clone)]
pub struct QueryLimits { pub max_query_len: usize, pub max_value_len: usize, pub max_ids: usize, pub max_search_len: usize }
impl Default for QueryLimits { fn default() -> Self { Self { max_query_len: 4096, max_value_len: 1024, max_ids: 100, max_search_len: 200 } } }
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListQuery { canonical: String, user: Option<u64> }
impl ListQuery {
  pub fn client_user_id(&self) -> Option<u64> { self.user }
  pub fn canonical(&self) -> &str { &self.canonical }
  pub fn upstream_query(&self, user_id: u64) -> String { format!("userId={user_id}") }
}
pub fn parse_list_query(_raw: Option<&str>, _limits: &QueryLimits) -> Result<ListQuery, Vec<FieldError>> { Ok(ListQuery { canonical: String::new(), user: None }) }
