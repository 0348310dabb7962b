//! The simulator's route table: which method and path is which endpoint,
//! the access it needs, and the handler it runs.
//!
//! Path ids are decimal digits; anything else makes the path unknown (404),
//! except the company id of `POST /companies/{id}/partnerships`, which keeps
//! its documented "Company not found" answer.

use http::Method;

use crate::config::SimConfig;
use crate::data::Dataset;
use crate::reply::{answer, Reply};
use crate::state::RecordedRequest;
use crate::validate::DomainRules;
use crate::{contacts, deals, leads, lookups, partnerships};

/// What a key needs for a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// One served endpoint, with its path ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    ListPartnerships,
    CreatePartnership,
    /// `POST /companies/{id}/partnerships`, `None` for a non-numeric id.
    CreatePartnershipForCompany(Option<u64>),
    UpdatePartnership(u64),
    DeletePartnership(u64),
    PartnershipUsers(u64),
    Users,
    Tags,
    CreateTag,
    Tiers,
    CreateTier,
    Categories,
    CreateCategory,
    UpdateCategories,
    PartnerStages,
    CreatePartnerStage,
    UpdatePartnerStages,
    DealStages,
    CreateDealStage,
    CustomFields,
    CreateCustomField,
    Contacts,
    CreateContact,
    UpdateContact(u64),
    Leads,
    CreateLead,
    Lead {
        company: Option<u64>,
        id: u64,
    },
    UpdateLead(u64),
    DeleteLead(u64),
    LeadNotes(u64),
    CreateLeadNote(u64),
    UpdateLeadNote {
        lead: u64,
        note: u64,
    },
    Deals,
    CreateDeal,
    Deal {
        company: Option<u64>,
        id: u64,
    },
    UpdateDeal(u64),
}

/// Strict decimal id (`u64::from_str` would also take `+7`).
fn id(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The route of `method path`, or `None` (→ 404) for anything else,
/// including a known path with another method.
pub(crate) fn match_route(method: &Method, path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.strip_prefix("/api/v1/")?.split('/').collect();
    let m = method;
    Some(match segments.as_slice() {
        ["partnerships"] if m == Method::GET => Route::ListPartnerships,
        ["partnerships"] if m == Method::POST => Route::CreatePartnership,
        ["companies", cid, "partnerships"] if m == Method::POST => {
            Route::CreatePartnershipForCompany(id(cid))
        }
        ["partnerships", pid] if m == Method::PATCH => Route::UpdatePartnership(id(pid)?),
        ["partnerships", pid] if m == Method::DELETE => Route::DeletePartnership(id(pid)?),
        ["partnerships", pid, "users"] if m == Method::GET => Route::PartnershipUsers(id(pid)?),
        ["users"] if m == Method::GET => Route::Users,
        ["tags"] if m == Method::GET => Route::Tags,
        ["tags"] if m == Method::POST => Route::CreateTag,
        ["tiers"] if m == Method::GET => Route::Tiers,
        ["tiers"] if m == Method::POST => Route::CreateTier,
        ["categories"] if m == Method::GET => Route::Categories,
        ["categories"] if m == Method::POST => Route::CreateCategory,
        ["categories"] if m == Method::PATCH => Route::UpdateCategories,
        ["stages", "partner-stages"] if m == Method::GET => Route::PartnerStages,
        ["stages", "partner-stages"] if m == Method::POST => Route::CreatePartnerStage,
        ["stages", "partner-stages"] if m == Method::PATCH => Route::UpdatePartnerStages,
        ["stages", "lead-deal-stages"] if m == Method::GET => Route::DealStages,
        ["stages", "lead-deal-stages"] if m == Method::POST => Route::CreateDealStage,
        ["custom-fields"] if m == Method::GET => Route::CustomFields,
        ["custom-fields"] if m == Method::POST => Route::CreateCustomField,
        ["contacts"] if m == Method::GET => Route::Contacts,
        ["contacts"] if m == Method::POST => Route::CreateContact,
        ["contacts", cid] if m == Method::PATCH => Route::UpdateContact(id(cid)?),
        ["leads"] if m == Method::GET => Route::Leads,
        ["leads"] if m == Method::POST => Route::CreateLead,
        ["companies", cid, "leads", lid] if m == Method::GET => Route::Lead {
            company: id(cid),
            id: id(lid)?,
        },
        ["leads", lid] if m == Method::PATCH => Route::UpdateLead(id(lid)?),
        ["leads", lid] if m == Method::DELETE => Route::DeleteLead(id(lid)?),
        ["leads", lid, "notes"] if m == Method::GET => Route::LeadNotes(id(lid)?),
        ["leads", lid, "notes"] if m == Method::POST => Route::CreateLeadNote(id(lid)?),
        ["leads", lid, "notes", nid] if m == Method::PATCH => Route::UpdateLeadNote {
            lead: id(lid)?,
            note: id(nid)?,
        },
        ["lead-deals"] if m == Method::GET => Route::Deals,
        ["lead-deals"] if m == Method::POST => Route::CreateDeal,
        ["companies", cid, "lead-deals", did] if m == Method::GET => Route::Deal {
            company: id(cid),
            id: id(did)?,
        },
        ["lead-deals", did] if m == Method::PATCH => Route::UpdateDeal(id(did)?),
        _ => return None,
    })
}

impl Route {
    /// GET needs read access; POST, PATCH and DELETE need write access.
    pub(crate) fn access(self) -> Access {
        match self {
            Route::ListPartnerships
            | Route::PartnershipUsers(_)
            | Route::Users
            | Route::Tags
            | Route::Tiers
            | Route::Categories
            | Route::PartnerStages
            | Route::DealStages
            | Route::CustomFields
            | Route::Contacts
            | Route::Leads
            | Route::Lead { .. }
            | Route::LeadNotes(_)
            | Route::Deals
            | Route::Deal { .. } => Access::Read,
            _ => Access::Write,
        }
    }
}

/// Runs the endpoint of `route` on the tenant (access already checked).
pub(crate) fn dispatch(
    route: Route,
    ds: &mut Dataset,
    config: &SimConfig,
    req: &RecordedRequest,
) -> Reply {
    let q = req.query.as_deref();
    let body = &req.body[..];
    let page = config.page_size;
    answer(match route {
        Route::ListPartnerships => partnerships::list(ds, q, page),
        Route::CreatePartnershipForCompany(cid) if cid != Some(config.company_id) => {
            Err(Reply::not_found("Company not found or user not authorized"))
        }
        Route::CreatePartnership | Route::CreatePartnershipForCompany(_) => {
            let rules = DomainRules {
                free_mail: &config.free_mail_domains,
                company_domains: &config.company_domains,
            };
            partnerships::create(ds, &req.headers, body, &rules)
        }
        Route::UpdatePartnership(id) => partnerships::update(ds, id, body),
        Route::DeletePartnership(id) => partnerships::delete(ds, id),
        Route::PartnershipUsers(id) => partnerships::users(ds, id),
        Route::Users => Ok(lookups::get_users(ds, q)),
        Route::Tags => lookups::get_tags(ds, q),
        Route::CreateTag => lookups::create_tag(ds, body),
        Route::Tiers => Ok(lookups::get_tiers(ds)),
        Route::CreateTier => lookups::create_tier(ds, body),
        Route::Categories => Ok(lookups::get_categories(ds)),
        Route::CreateCategory => lookups::create_category(ds, body),
        Route::UpdateCategories => lookups::update_categories(ds, body),
        Route::PartnerStages => Ok(lookups::get_partner_stages(ds)),
        Route::CreatePartnerStage => lookups::create_partner_stage(ds, body),
        Route::UpdatePartnerStages => lookups::update_partner_stages(ds, body),
        Route::DealStages => Ok(lookups::get_deal_stages(ds)),
        Route::CreateDealStage => lookups::create_deal_stage(ds, body),
        Route::CustomFields => lookups::get_custom_fields(ds, q),
        Route::CreateCustomField => lookups::create_custom_field(ds, body),
        Route::Contacts => contacts::list(ds, q),
        Route::CreateContact => contacts::create(ds, body),
        Route::UpdateContact(id) => contacts::update(ds, id, body),
        Route::Leads => leads::list(ds, q, page),
        Route::CreateLead => leads::create(ds, body),
        Route::Lead { company, id } => leads::get_one(ds, company, id),
        Route::UpdateLead(id) => leads::update(ds, id, body),
        Route::DeleteLead(id) => leads::delete(ds, id),
        Route::LeadNotes(id) => leads::notes(ds, id),
        Route::CreateLeadNote(id) => leads::create_note(ds, id, body),
        Route::UpdateLeadNote { lead, note } => leads::update_note(ds, lead, note, body),
        Route::Deals => deals::list(ds, q, page),
        Route::CreateDeal => deals::create(ds, body),
        Route::Deal { company, id } => deals::get_one(ds, company, id),
        Route::UpdateDeal(id) => deals::update(ds, id, body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_route_matches_with_its_access() {
        let cases: &[(Method, &str, Access)] = &[
            (Method::GET, "/api/v1/partnerships", Access::Read),
            (Method::POST, "/api/v1/partnerships", Access::Write),
            (
                Method::POST,
                "/api/v1/companies/123/partnerships",
                Access::Write,
            ),
            (Method::PATCH, "/api/v1/partnerships/1", Access::Write),
            (Method::DELETE, "/api/v1/partnerships/1", Access::Write),
            (Method::GET, "/api/v1/partnerships/1/users", Access::Read),
            (Method::GET, "/api/v1/users", Access::Read),
            (Method::GET, "/api/v1/tags", Access::Read),
            (Method::POST, "/api/v1/tags", Access::Write),
            (Method::GET, "/api/v1/tiers", Access::Read),
            (Method::POST, "/api/v1/tiers", Access::Write),
            (Method::GET, "/api/v1/categories", Access::Read),
            (Method::POST, "/api/v1/categories", Access::Write),
            (Method::PATCH, "/api/v1/categories", Access::Write),
            (Method::GET, "/api/v1/stages/partner-stages", Access::Read),
            (Method::POST, "/api/v1/stages/partner-stages", Access::Write),
            (
                Method::PATCH,
                "/api/v1/stages/partner-stages",
                Access::Write,
            ),
            (Method::GET, "/api/v1/stages/lead-deal-stages", Access::Read),
            (
                Method::POST,
                "/api/v1/stages/lead-deal-stages",
                Access::Write,
            ),
            (Method::GET, "/api/v1/custom-fields", Access::Read),
            (Method::POST, "/api/v1/custom-fields", Access::Write),
            (Method::GET, "/api/v1/contacts", Access::Read),
            (Method::POST, "/api/v1/contacts", Access::Write),
            (Method::PATCH, "/api/v1/contacts/5", Access::Write),
            (Method::GET, "/api/v1/leads", Access::Read),
            (Method::POST, "/api/v1/leads", Access::Write),
            (
                Method::GET,
                "/api/v1/companies/123/leads/7000",
                Access::Read,
            ),
            (Method::PATCH, "/api/v1/leads/7000", Access::Write),
            (Method::DELETE, "/api/v1/leads/7000", Access::Write),
            (Method::GET, "/api/v1/leads/7000/notes", Access::Read),
            (Method::POST, "/api/v1/leads/7000/notes", Access::Write),
            (Method::PATCH, "/api/v1/leads/7000/notes/1", Access::Write),
            (Method::GET, "/api/v1/lead-deals", Access::Read),
            (Method::POST, "/api/v1/lead-deals", Access::Write),
            (
                Method::GET,
                "/api/v1/companies/123/lead-deals/8000",
                Access::Read,
            ),
            (Method::PATCH, "/api/v1/lead-deals/8000", Access::Write),
        ];
        for (method, path, access) in cases {
            let route = match_route(method, path).unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!(route.access(), *access, "{method} {path}");
            // Writes are exactly the non-GET methods.
            assert_eq!(*access == Access::Read, *method == Method::GET);
        }
    }

    #[test]
    fn typed_ids_and_unknown_paths() {
        assert_eq!(
            match_route(&Method::PATCH, "/api/v1/leads/7/notes/9"),
            Some(Route::UpdateLeadNote { lead: 7, note: 9 })
        );
        assert_eq!(
            match_route(&Method::POST, "/api/v1/companies/x/partnerships"),
            Some(Route::CreatePartnershipForCompany(None))
        );
        assert_eq!(
            match_route(&Method::GET, "/api/v1/companies/x/leads/1"),
            Some(Route::Lead {
                company: None,
                id: 1
            })
        );
        for (method, path) in [
            (Method::PATCH, "/api/v1/partnerships/+1"),
            (Method::PATCH, "/api/v1/partnerships/"),
            (Method::DELETE, "/api/v1/leads/1.0"),
            (Method::GET, "/api/v1/partnerships/1"),
            (Method::PUT, "/api/v1/tags"),
            (Method::GET, "/api/v1/tags/"),
            (Method::GET, "/api/v1"),
            (Method::GET, "/api/v1/stages"),
            (Method::GET, "/api/v1/companies/123/leads"),
        ] {
            assert_eq!(match_route(&method, path), None, "{method} {path}");
        }
    }
}
