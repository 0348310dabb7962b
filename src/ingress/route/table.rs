//! The route table: every endpoint the gateway serves, as data. Matching, access control,
//! query validation, caching, invalidation, body validation, the OpenAPI document and the
//! metrics labels are all read from here; anything not in the table is a local 404.
//!
//! Source: JourneyBee's documented v1 API (`journeybee-api.md`, `journeybee-api-more.md`).

use crate::validate::query::{self, QuerySpec};

/// One served endpoint. Its label is the bounded value used in metrics and logs (never the
/// raw path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /api/v1/partnerships`
    List,
    /// `POST /api/v1/partnerships`
    Create,
    /// `POST /api/v1/companies/{companyId}/partnerships`
    CreateForCompany,
    /// `PATCH /api/v1/partnerships/{partnershipId}`
    UpdatePartnership,
    /// `DELETE /api/v1/partnerships/{partnershipId}`
    DeletePartnership,
    /// `GET /api/v1/partnerships/{partnershipId}/users`
    PartnershipUsers,
    /// `GET /api/v1/users`
    Users,
    /// `GET /api/v1/tags`
    Tags,
    /// `POST /api/v1/tags`
    CreateTag,
    /// `GET /api/v1/tiers`
    Tiers,
    /// `POST /api/v1/tiers`
    CreateTier,
    /// `GET /api/v1/categories`
    Categories,
    /// `POST /api/v1/categories`
    CreateCategory,
    /// `PATCH /api/v1/categories`
    UpdateCategories,
    /// `GET /api/v1/stages/partner-stages`
    PartnerStages,
    /// `POST /api/v1/stages/partner-stages`
    CreatePartnerStage,
    /// `PATCH /api/v1/stages/partner-stages`
    UpdatePartnerStages,
    /// `GET /api/v1/stages/lead-deal-stages`
    DealStages,
    /// `POST /api/v1/stages/lead-deal-stages`
    CreateDealStage,
    /// `GET /api/v1/custom-fields`
    CustomFields,
    /// `POST /api/v1/custom-fields`
    CreateCustomField,
    /// `GET /api/v1/contacts`
    Contacts,
    /// `POST /api/v1/contacts`
    CreateContact,
    /// `PATCH /api/v1/contacts/{contactId}`
    UpdateContact,
    /// `GET /api/v1/leads`
    Leads,
    /// `POST /api/v1/leads`
    CreateLead,
    /// `GET /api/v1/companies/{companyId}/leads/{leadId}`
    Lead,
    /// `PATCH /api/v1/leads/{leadId}`
    UpdateLead,
    /// `DELETE /api/v1/leads/{leadId}`
    DeleteLead,
    /// `GET /api/v1/leads/{leadId}/notes`
    LeadNotes,
    /// `POST /api/v1/leads/{leadId}/notes`
    CreateLeadNote,
    /// `PATCH /api/v1/leads/{leadId}/notes/{noteId}`
    UpdateLeadNote,
    /// `GET /api/v1/lead-deals`
    Deals,
    /// `POST /api/v1/lead-deals`
    CreateDeal,
    /// `GET /api/v1/companies/{companyId}/lead-deals/{dealId}`
    Deal,
    /// `PATCH /api/v1/lead-deals/{dealId}`
    UpdateDeal,
    /// Anything else (answered 404/405/400 locally).
    Unmatched,
}

/// HTTP methods the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Reads (read access).
    Get,
    /// Creates (write access).
    Post,
    /// Updates (write access).
    Patch,
    /// Deletes (write access).
    Delete,
}

impl Verb {
    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    /// The verb of an HTTP method, if the table uses it.
    pub fn of(method: &http::Method) -> Option<Verb> {
        match *method {
            http::Method::GET => Some(Verb::Get),
            http::Method::POST => Some(Verb::Post),
            http::Method::PATCH => Some(Verb::Patch),
            http::Method::DELETE => Some(Verb::Delete),
            _ => None,
        }
    }
}

/// A family of data: a write to one makes the cached reads of it stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Partnerships and their partner users.
    Partnerships,
    /// Company users.
    Users,
    /// Tags.
    Tags,
    /// Tiers.
    Tiers,
    /// Categories.
    Categories,
    /// Partner stages.
    PartnerStages,
    /// Lead-deal stages.
    DealStages,
    /// Custom field definitions.
    CustomFields,
    /// Partner contacts.
    Contacts,
    /// Leads and their notes.
    Leads,
    /// Deals.
    Deals,
}

impl Group {
    /// Every group (a purge bumps them all).
    pub const ALL: &'static [Group] = &[
        Group::Partnerships,
        Group::Users,
        Group::Tags,
        Group::Tiers,
        Group::Categories,
        Group::PartnerStages,
        Group::DealStages,
        Group::CustomFields,
        Group::Contacts,
        Group::Leads,
        Group::Deals,
    ];

    /// A stable name (state-store keys, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Partnerships => "partnerships",
            Group::Users => "users",
            Group::Tags => "tags",
            Group::Tiers => "tiers",
            Group::Categories => "categories",
            Group::PartnerStages => "partner_stages",
            Group::DealStages => "deal_stages",
            Group::CustomFields => "custom_fields",
            Group::Contacts => "contacts",
            Group::Leads => "leads",
            Group::Deals => "deals",
        }
    }
}

/// How a read is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Not cached (writes).
    None,
    /// A company-wide lookup: the same for every user of a key, cached per upstream key for
    /// `[cache] lookup_ttl`.
    Lookup,
    /// Cached per upstream key and exact forwarded query (which carries the forced `userId`
    /// where the route takes one, so per-user data stays per user), for `[cache] ttl`.
    Read,
}

/// What a write's body is checked against before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (reads, DELETE).
    None,
    /// The documented partnership create (seed page), plus the company's references.
    PartnershipCreate,
    /// A partnership update: the create's optional fields, plus the company's references.
    PartnershipUpdate,
    /// `POST /tags`.
    Tag,
    /// `POST /tiers`.
    Tier,
    /// `POST /categories`.
    Category,
    /// `PATCH /categories` (the documented object or the docs' bare array).
    CategoriesBulk,
    /// `POST /stages/partner-stages`.
    PartnerStage,
    /// `PATCH /stages/partner-stages` (object or bare array).
    PartnerStagesBulk,
    /// `POST /stages/lead-deal-stages`.
    DealStage,
    /// `POST /custom-fields`.
    CustomField,
    /// `POST /leads`.
    Lead,
    /// `PATCH /leads/{id}`.
    LeadUpdate,
    /// `POST /lead-deals`.
    Deal,
    /// `PATCH /lead-deals/{id}`.
    DealUpdate,
    /// `PATCH /contacts/{id}`.
    ContactUpdate,
    /// Undocumented body: must be a JSON object, forwarded byte for byte.
    Forward,
}

/// Everything the gateway knows about one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// The endpoint.
    pub route: Route,
    /// Its method.
    pub verb: Verb,
    /// The path template; `{name}` segments are positive integer ids.
    pub template: &'static str,
    /// The metrics and log label.
    pub label: &'static str,
    /// A one-line description (OpenAPI summary).
    pub summary: &'static str,
    /// The documented query.
    pub query: QuerySpec,
    /// How a read is cached.
    pub caching: Caching,
    /// What the route reads (its cache generation) or writes.
    pub group: Group,
    /// The groups whose cached reads a successful call makes stale.
    pub invalidates: &'static [Group],
    /// The body check.
    pub body: BodyKind,
}

impl RouteSpec {
    /// Whether the route needs write access (POST, PATCH, DELETE).
    pub fn is_write(&self) -> bool {
        self.verb != Verb::Get
    }

    /// `"PATCH /api/v1/partnerships/{partnershipId}"`, as config names a route.
    pub fn name(&self) -> String {
        format!("{} {}", self.verb.as_str(), self.template)
    }
}

const P: &[Group] = &[Group::Partnerships, Group::Contacts];

macro_rules! spec {
    ($route:ident, $verb:ident, $template:literal, $label:literal, $summary:literal,
     $query:expr, $caching:ident, $group:ident, $invalidates:expr, $body:ident) => {
        RouteSpec {
            route: Route::$route,
            verb: Verb::$verb,
            template: $template,
            label: $label,
            summary: $summary,
            query: $query,
            caching: Caching::$caching,
            group: Group::$group,
            invalidates: $invalidates,
            body: BodyKind::$body,
        }
    };
}

/// Every served endpoint. Order matters only for `Route::ALL` (metrics label sets).
pub const TABLE: &[RouteSpec] = &[
    spec!(
        List,
        Get,
        "/api/v1/partnerships",
        "list",
        "List partnerships (userId forced to the caller's)",
        query::PARTNERSHIPS,
        Read,
        Partnerships,
        &[],
        None
    ),
    spec!(
        Create,
        Post,
        "/api/v1/partnerships",
        "create",
        "Create a partnership (sends invitations)",
        query::NONE,
        None,
        Partnerships,
        P,
        PartnershipCreate
    ),
    spec!(
        CreateForCompany,
        Post,
        "/api/v1/companies/{companyId}/partnerships",
        "create_company",
        "Create a partnership for a company",
        query::NONE,
        None,
        Partnerships,
        P,
        PartnershipCreate
    ),
    spec!(
        UpdatePartnership,
        Patch,
        "/api/v1/partnerships/{partnershipId}",
        "partnership_update",
        "Update a partnership",
        query::NONE,
        None,
        Partnerships,
        P,
        PartnershipUpdate
    ),
    spec!(
        DeletePartnership,
        Delete,
        "/api/v1/partnerships/{partnershipId}",
        "partnership_delete",
        "End a partnership (the partner is notified)",
        query::NONE,
        None,
        Partnerships,
        &[
            Group::Partnerships,
            Group::Contacts,
            Group::Leads,
            Group::Deals
        ],
        None
    ),
    spec!(
        PartnershipUsers,
        Get,
        "/api/v1/partnerships/{partnershipId}/users",
        "partnership_users",
        "The partner company's users",
        query::NONE,
        Read,
        Partnerships,
        &[],
        None
    ),
    spec!(
        Users,
        Get,
        "/api/v1/users",
        "users",
        "Company users",
        query::USERS,
        Lookup,
        Users,
        &[],
        None
    ),
    spec!(
        Tags,
        Get,
        "/api/v1/tags",
        "tags",
        "Tags",
        query::TAGS,
        Lookup,
        Tags,
        &[],
        None
    ),
    spec!(
        CreateTag,
        Post,
        "/api/v1/tags",
        "tag_create",
        "Create a tag",
        query::NONE,
        None,
        Tags,
        &[Group::Tags],
        Tag
    ),
    spec!(
        Tiers,
        Get,
        "/api/v1/tiers",
        "tiers",
        "Tiers",
        query::NONE,
        Lookup,
        Tiers,
        &[],
        None
    ),
    spec!(
        CreateTier,
        Post,
        "/api/v1/tiers",
        "tier_create",
        "Create a tier",
        query::NONE,
        None,
        Tiers,
        &[Group::Tiers],
        Tier
    ),
    spec!(
        Categories,
        Get,
        "/api/v1/categories",
        "categories",
        "Categories",
        query::NONE,
        Lookup,
        Categories,
        &[],
        None
    ),
    spec!(
        CreateCategory,
        Post,
        "/api/v1/categories",
        "category_create",
        "Create a category",
        query::NONE,
        None,
        Categories,
        &[Group::Categories],
        Category
    ),
    spec!(
        UpdateCategories,
        Patch,
        "/api/v1/categories",
        "categories_update",
        "Rename categories in bulk",
        query::NONE,
        None,
        Categories,
        &[Group::Categories, Group::Partnerships],
        CategoriesBulk
    ),
    spec!(
        PartnerStages,
        Get,
        "/api/v1/stages/partner-stages",
        "partner_stages",
        "Partner stages",
        query::NONE,
        Lookup,
        PartnerStages,
        &[],
        None
    ),
    spec!(
        CreatePartnerStage,
        Post,
        "/api/v1/stages/partner-stages",
        "partner_stage_create",
        "Create a partner stage",
        query::NONE,
        None,
        PartnerStages,
        &[Group::PartnerStages],
        PartnerStage
    ),
    spec!(
        UpdatePartnerStages,
        Patch,
        "/api/v1/stages/partner-stages",
        "partner_stages_update",
        "Update partner stages in bulk",
        query::NONE,
        None,
        PartnerStages,
        &[Group::PartnerStages, Group::Partnerships],
        PartnerStagesBulk
    ),
    spec!(
        DealStages,
        Get,
        "/api/v1/stages/lead-deal-stages",
        "deal_stages",
        "Lead-deal stages",
        query::NONE,
        Lookup,
        DealStages,
        &[],
        None
    ),
    spec!(
        CreateDealStage,
        Post,
        "/api/v1/stages/lead-deal-stages",
        "deal_stage_create",
        "Create a lead-deal stage",
        query::NONE,
        None,
        DealStages,
        &[Group::DealStages],
        DealStage
    ),
    spec!(
        CustomFields,
        Get,
        "/api/v1/custom-fields",
        "custom_fields",
        "Custom field definitions",
        query::CUSTOM_FIELDS,
        Lookup,
        CustomFields,
        &[],
        None
    ),
    spec!(
        CreateCustomField,
        Post,
        "/api/v1/custom-fields",
        "custom_field_create",
        "Create a custom field definition",
        query::NONE,
        None,
        CustomFields,
        &[Group::CustomFields],
        CustomField
    ),
    spec!(
        Contacts,
        Get,
        "/api/v1/contacts",
        "contacts",
        "Partner contacts",
        query::CONTACTS,
        Read,
        Contacts,
        &[],
        None
    ),
    spec!(
        CreateContact,
        Post,
        "/api/v1/contacts",
        "contact_create",
        "Create a contact",
        query::NONE,
        None,
        Contacts,
        &[Group::Contacts, Group::Partnerships],
        Forward
    ),
    spec!(
        UpdateContact,
        Patch,
        "/api/v1/contacts/{contactId}",
        "contact_update",
        "Update a contact",
        query::NONE,
        None,
        Contacts,
        &[Group::Contacts, Group::Partnerships],
        ContactUpdate
    ),
    spec!(
        Leads,
        Get,
        "/api/v1/leads",
        "leads",
        "List leads (userId forced to the caller's)",
        query::LEADS,
        Read,
        Leads,
        &[],
        None
    ),
    spec!(
        CreateLead,
        Post,
        "/api/v1/leads",
        "lead_create",
        "Create a lead (notifies, fires webhooks)",
        query::NONE,
        None,
        Leads,
        &[Group::Leads],
        Lead
    ),
    spec!(
        Lead,
        Get,
        "/api/v1/companies/{companyId}/leads/{leadId}",
        "lead",
        "One lead",
        query::NONE,
        Read,
        Leads,
        &[],
        None
    ),
    spec!(
        UpdateLead,
        Patch,
        "/api/v1/leads/{leadId}",
        "lead_update",
        "Update a lead",
        query::NONE,
        None,
        Leads,
        &[Group::Leads, Group::Deals],
        LeadUpdate
    ),
    spec!(
        DeleteLead,
        Delete,
        "/api/v1/leads/{leadId}",
        "lead_delete",
        "Delete a lead",
        query::NONE,
        None,
        Leads,
        &[Group::Leads, Group::Deals],
        None
    ),
    spec!(
        LeadNotes,
        Get,
        "/api/v1/leads/{leadId}/notes",
        "lead_notes",
        "A lead's notes",
        query::NONE,
        Read,
        Leads,
        &[],
        None
    ),
    spec!(
        CreateLeadNote,
        Post,
        "/api/v1/leads/{leadId}/notes",
        "lead_note_create",
        "Add a note to a lead",
        query::NONE,
        None,
        Leads,
        &[Group::Leads],
        Forward
    ),
    spec!(
        UpdateLeadNote,
        Patch,
        "/api/v1/leads/{leadId}/notes/{noteId}",
        "lead_note_update",
        "Update a lead note",
        query::NONE,
        None,
        Leads,
        &[Group::Leads],
        Forward
    ),
    spec!(
        Deals,
        Get,
        "/api/v1/lead-deals",
        "deals",
        "List deals (query only partly documented: other parameters are forwarded)",
        query::LEAD_DEALS,
        Read,
        Deals,
        &[],
        None
    ),
    spec!(
        CreateDeal,
        Post,
        "/api/v1/lead-deals",
        "deal_create",
        "Create a deal",
        query::NONE,
        None,
        Deals,
        &[Group::Deals, Group::Leads],
        Deal
    ),
    spec!(
        Deal,
        Get,
        "/api/v1/companies/{companyId}/lead-deals/{dealId}",
        "deal",
        "One deal",
        query::NONE,
        Read,
        Deals,
        &[],
        None
    ),
    spec!(
        UpdateDeal,
        Patch,
        "/api/v1/lead-deals/{dealId}",
        "deal_update",
        "Update a deal",
        query::NONE,
        None,
        Deals,
        &[Group::Deals, Group::Leads],
        DealUpdate
    ),
];

impl Route {
    /// Every route, for pre-resolving metric label sets; `index()` is the position here.
    pub const ALL: [Route; 37] = {
        let mut all = [Route::Unmatched; 37];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].route;
            i += 1;
        }
        all
    };

    /// The route's entry in the table (None for `Unmatched`).
    pub fn spec(self) -> Option<&'static RouteSpec> {
        TABLE.get(self.index())
    }

    /// The route template label.
    pub fn label(self) -> &'static str {
        self.spec().map_or("unmatched", |s| s.label)
    }

    /// Position in [`Route::ALL`] (and in [`TABLE`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether this route creates a partnership (sends invitations).
    pub fn is_create(self) -> bool {
        matches!(self, Route::Create | Route::CreateForCompany)
    }

    /// Whether this route writes (needs write access; sent at most once; idempotency, audit).
    pub fn is_write(self) -> bool {
        self.spec().is_some_and(RouteSpec::is_write)
    }

    /// Whether this route reads (retried on transient failures, cacheable).
    pub fn is_read(self) -> bool {
        self.spec().is_some_and(|s| !s.is_write())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_indexed_by_route() {
        assert_eq!(TABLE.len() + 1, Route::ALL.len());
        for (i, spec) in TABLE.iter().enumerate() {
            assert_eq!(spec.route.index(), i, "{:?}", spec.route);
        }
        assert_eq!(Route::ALL[TABLE.len()], Route::Unmatched);
        assert_eq!(Route::Unmatched.index(), TABLE.len());
    }

    #[test]
    fn reads_are_cached_and_writes_are_not() {
        for spec in TABLE {
            assert_eq!(
                spec.is_write(),
                spec.caching == Caching::None,
                "{}",
                spec.name()
            );
            if spec.is_write() {
                assert_ne!(spec.verb, Verb::Get);
            }
        }
    }
}
