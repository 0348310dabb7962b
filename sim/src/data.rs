//! The simulated tenant: [`Dataset`] holds every record (see `records`),
//! finds them by id, inserts and removes partnerships without ever reusing
//! an id, and renders a partnership in exactly the shape of the documented
//! "Get Partners" example. The seeded content comes from `seed`.

use serde::Serialize;
use serde_json::Value;

use crate::records::{
    Association, Category, Contact, Country, CustomFieldDef, CustomFieldValue, Deal, Lead,
    NewPartnership, Note, PartnerType, Partnership, Stage, Tag, Tier, User,
};
use crate::time::{days_from_civil, format_timestamp};

/// The whole simulated tenant.
#[derive(Debug)]
pub(crate) struct Dataset {
    /// The simulated company's id (`company_id` of the lookups).
    pub company_id: u64,
    /// Partner types the company has enabled; the list default `view`.
    pub enabled_partner_types: Vec<PartnerType>,
    /// Active company users: valid `userId`s and `assignedUsers`.
    pub users: Vec<User>,
    /// Disabled and indirect users, listed by `GET /users?indirect=...` only;
    /// never valid as `userId` or in `assignedUsers`.
    pub other_users: Vec<User>,
    /// Partner stages.
    pub stages: Vec<Stage>,
    /// Lead-deal stages.
    pub deal_stages: Vec<Stage>,
    pub tiers: Vec<Tier>,
    pub categories: Vec<Category>,
    pub tags: Vec<Tag>,
    pub custom_fields: Vec<CustomFieldDef>,
    pub countries: Vec<Country>,
    /// Newest first.
    pub partnerships: Vec<Partnership>,
    /// Newest first.
    pub leads: Vec<Lead>,
    pub notes: Vec<Note>,
    /// Newest first.
    pub deals: Vec<Deal>,
    pub(crate) next_value_id: u64,
    /// Highest (id, partnership id, partner id, logo id) ever deleted, so that
    /// a create after a delete never reuses an id, as an auto-increment
    /// key would not.
    pub(crate) deleted_high: [u64; 4],
    /// Highest lead / deal id ever deleted (ids are never reused).
    pub(crate) deleted_lead_high: u64,
    pub(crate) deleted_deal_high: u64,
    pub(crate) next_contact_id: u64,
    /// The generator's main stream, left where it ended: draws the logo
    /// uuids of created partnerships.
    pub(crate) rng: fastrand::Rng,
    /// Draws everything added after the original generator (lookup uuids,
    /// leads, deals, contact details), so that the partnerships stay
    /// exactly what they were for a seed.
    pub(crate) extra_rng: fastrand::Rng,
}

fn hex_id(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A random UUID-v4-shaped string (shape only; nothing depends on the bits).
pub(crate) fn uuid(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        hex_id(rng, 8),
        hex_id(rng, 4),
        hex_id(rng, 3),
        ["8", "9", "a", "b"][rng.usize(0..4)],
        hex_id(rng, 3),
        hex_id(rng, 12)
    )
}

impl Dataset {
    pub(crate) fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub(crate) fn stage(&self, id: u64) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    pub(crate) fn tier(&self, id: u64) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.id == id)
    }

    pub(crate) fn category(&self, id: u64) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub(crate) fn country(&self, id: u64) -> Option<&Country> {
        self.countries.iter().find(|c| c.id == id)
    }

    pub(crate) fn tag(&self, id: u64) -> Option<&Tag> {
        self.tags.iter().find(|t| t.id == id)
    }

    pub(crate) fn custom_field(&self, id: u64) -> Option<&CustomFieldDef> {
        self.custom_fields.iter().find(|f| f.id == id)
    }

    /// True if some partnership already uses this (lower-cased) domain.
    pub(crate) fn domain_exists(&self, domain: &str) -> bool {
        self.partnerships.iter().any(|p| p.domain == domain)
    }

    /// Inserts a validated partnership as the newest one.
    pub(crate) fn insert(&mut self, new: NewPartnership) {
        let newest = self.partnerships.iter().map(|p| p.created_at).max();
        // One second after the newest keeps created_at unique and makes the
        // new partnership first in a default list, without depending on the
        // wall clock (tests stay deterministic).
        let created_at = newest.map_or(days_from_civil(2025, 6, 2) * 86_400, |t| t + 1);
        let high = self.deleted_high;
        let max_id = |f: fn(&Partnership) -> u64, base: u64, deleted: u64| {
            self.partnerships
                .iter()
                .map(f)
                .max()
                .unwrap_or(base)
                .max(deleted)
        };
        let id = max_id(|p| p.id, 999, high[0]) + 1;
        let partnership_id = max_id(|p| p.partnership_id, 4999, high[1]) + 1;
        let partner_id = max_id(|p| p.partner_id, 19_999, high[2]) + 1;
        let logo_id = max_id(|p| p.logo_id, 29_999, high[3]) + 1;
        let custom_fields = new
            .custom_fields
            .into_iter()
            .map(|(field_id, value)| {
                let value_id = self.next_value_id;
                self.next_value_id += 1;
                CustomFieldValue {
                    field_id,
                    value_id,
                    value,
                }
            })
            .collect();
        let logo_uuid = uuid(&mut self.rng);
        let now = crate::time::now_secs();
        let contacts = new
            .contacts
            .into_iter()
            .map(|c| {
                let id = self.take_contact_id();
                // A contact given without a name gets the local part, as a
                // user who never filled in a profile shows up.
                let local = c.email.split('@').next().unwrap_or_default().to_string();
                Contact {
                    id,
                    first_name: c.first_name.unwrap_or(local),
                    last_name: c.last_name.unwrap_or_default(),
                    email: c.email,
                    position: None,
                    phone_number: None,
                    tags: c.tags,
                    created_at: now,
                    updated_at: now,
                }
            })
            .collect();
        self.partnerships.insert(
            0,
            Partnership {
                id,
                partnership_id,
                uuid: uuid(&mut self.extra_rng),
                created_at,
                updated_at: created_at,
                // Invitations go out on create; an inactive partnership sends
                // none.
                status: if new.inactive { "inactive" } else { "pending" }.into(),
                partner_type: new.partner_type,
                stage_id: new.stage_id,
                tier_id: new.tier_id,
                category_id: new.category_id,
                partner_id,
                website_url: format!("https://{}", new.domain),
                name: new.name,
                logo_id,
                logo_uuid,
                country_id: new.country_id,
                domain: new.domain,
                contacts,
                assigned_users: new.assigned_users,
                tags: new.tags,
                custom_fields,
                fallback_data: None,
            },
        );
    }

    /// A fresh contact id.
    pub(crate) fn take_contact_id(&mut self) -> u64 {
        let id = self.next_contact_id;
        self.next_contact_id += 1;
        id
    }

    /// A fresh custom field value id.
    pub(crate) fn take_value_id(&mut self) -> u64 {
        let id = self.next_value_id;
        self.next_value_id += 1;
        id
    }

    /// The partnership with this (top-level, "company partnership") id.
    pub(crate) fn partnership(&self, id: u64) -> Option<&Partnership> {
        self.partnerships.iter().find(|p| p.id == id)
    }

    /// Mutable [`Dataset::partnership`].
    pub(crate) fn partnership_mut(&mut self, id: u64) -> Option<&mut Partnership> {
        self.partnerships.iter_mut().find(|p| p.id == id)
    }

    /// Removes a partnership, remembering its ids so they are never reused.
    pub(crate) fn remove_partnership(&mut self, id: u64) -> Option<Partnership> {
        let i = self.partnerships.iter().position(|p| p.id == id)?;
        let p = self.partnerships.remove(i);
        let h = &mut self.deleted_high;
        h[0] = h[0].max(p.id);
        h[1] = h[1].max(p.partnership_id);
        h[2] = h[2].max(p.partner_id);
        h[3] = h[3].max(p.logo_id);
        Some(p)
    }

    /// The tag with this id if it has this association.
    pub(crate) fn tag_for(&self, id: u64, association: Association) -> Option<&Tag> {
        self.tag(id).filter(|t| t.association == association)
    }

    pub(crate) fn lead(&self, id: u64) -> Option<&Lead> {
        self.leads.iter().find(|l| l.id == id)
    }

    pub(crate) fn deal(&self, id: u64) -> Option<&Deal> {
        self.deals.iter().find(|d| d.id == id)
    }

    /// The users with these ids, in the given order (unknown ids skipped).
    pub(crate) fn users_of(&self, ids: &[u64]) -> Vec<&User> {
        ids.iter().filter_map(|id| self.any_user(*id)).collect()
    }

    /// The tags with these ids, in the given order (unknown ids skipped).
    pub(crate) fn tags_of(&self, ids: &[u64]) -> Vec<&Tag> {
        ids.iter().filter_map(|id| self.tag(*id)).collect()
    }

    /// Stored values in the items' `customFields` shape.
    pub(crate) fn custom_field_values<'a>(
        &'a self,
        values: &'a [CustomFieldValue],
    ) -> Vec<CustomFieldOut<'a>> {
        values
            .iter()
            .filter_map(|v| {
                self.custom_field(v.field_id).map(|d| CustomFieldOut {
                    id: d.id,
                    label: &d.label,
                    field_type: d.field_type.as_str(),
                    value: v.value.to_json(),
                    custom_field_value_id: v.value_id,
                })
            })
            .collect()
    }

    /// An active user or a disabled/indirect one (for rendering only).
    pub(crate) fn any_user(&self, id: u64) -> Option<&User> {
        self.user(id)
            .or_else(|| self.other_users.iter().find(|u| u.id == id))
    }

    /// One partnership in the documented list-item shape, ready to be
    /// serialized (field order as in the docs' example).
    pub(crate) fn item<'a>(&'a self, p: &'a Partnership, total: usize) -> Item<'a> {
        let stage = self.stage(p.stage_id);
        let country = p.country_id.and_then(|id| self.country(id));
        Item {
            total,
            id: p.id,
            stage_id: p.stage_id,
            stage_label: stage.map(|s| s.label.as_str()),
            stage_series: stage.map(|s| s.series),
            partnership: PartnershipOut {
                id: p.partnership_id,
                created_at: format_timestamp(p.created_at),
                stage: &p.status,
                partner_type: p.partner_type.as_str(),
            },
            tier: p.tier_id.and_then(|id| self.tier(id)),
            category: p.category_id.and_then(|id| self.category(id)),
            partner: PartnerOut {
                id: p.partner_id,
                name: &p.name,
                website_url: &p.website_url,
                logo: LogoOut {
                    id: p.logo_id,
                    uuid: &p.logo_uuid,
                },
                address: AddressOut {
                    country_id: country.map(|c| c.id),
                    country_label: country.map(|c| c.label.as_str()),
                },
                fallback_data: p.fallback_data.clone(),
            },
            assigned_users: p
                .assigned_users
                .iter()
                .filter_map(|id| self.user(*id))
                .collect(),
            tags: p.tags.iter().filter_map(|id| self.tag(*id)).collect(),
            custom_fields: self.custom_field_values(&p.custom_fields),
        }
    }
}

/// A list item. Typed rather than a `serde_json::Value` so that keys keep the
/// documented order (a `Value` map would sort them).
#[derive(Serialize)]
pub(crate) struct Item<'a> {
    total: usize,
    id: u64,
    stage_id: u64,
    stage_label: Option<&'a str>,
    stage_series: Option<u64>,
    partnership: PartnershipOut<'a>,
    tier: Option<&'a Tier>,
    category: Option<&'a Category>,
    partner: PartnerOut<'a>,
    assigned_users: Vec<&'a User>,
    tags: Vec<&'a Tag>,
    #[serde(rename = "customFields")]
    custom_fields: Vec<CustomFieldOut<'a>>,
}

#[derive(Serialize)]
struct PartnershipOut<'a> {
    id: u64,
    created_at: String,
    stage: &'a str,
    partner_type: &'static str,
}

#[derive(Serialize)]
struct PartnerOut<'a> {
    id: u64,
    name: &'a str,
    website_url: &'a str,
    logo: LogoOut<'a>,
    address: AddressOut<'a>,
    /// Always `null` here, as in the docs' example.
    fallback_data: Option<Value>,
}

#[derive(Serialize)]
struct LogoOut<'a> {
    id: u64,
    uuid: &'a str,
}

#[derive(Serialize)]
struct AddressOut<'a> {
    country_id: Option<u64>,
    country_label: Option<&'a str>,
}

/// A custom field value as items show it.
#[derive(Serialize)]
pub(crate) struct CustomFieldOut<'a> {
    id: u64,
    label: &'a str,
    #[serde(rename = "type")]
    field_type: &'static str,
    value: Value,
    custom_field_value_id: u64,
}
