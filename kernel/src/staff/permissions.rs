//! Roles, permissions, and the one table that says which permission each admin route
//! needs. The admin middleware consults [`required`] for every request; a route missing
//! from the table is refused to everyone (and a test fails), so a new route cannot slip
//! out unguarded.

use axum::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One thing staff may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
pub enum Permission {
    #[serde(rename = "catalog.read")]
    CatalogRead,
    #[serde(rename = "catalog.write")]
    CatalogWrite,
    #[serde(rename = "inventory.read")]
    InventoryRead,
    /// Locations, receiving lots, stock adjustments.
    #[serde(rename = "inventory.write")]
    InventoryWrite,
    /// Store-wide settings (shelf-life rules and the like).
    #[serde(rename = "settings.write")]
    SettingsWrite,
    #[serde(rename = "plugins.read")]
    PluginsRead,
    /// Install, configure, enable, activate, roll back plugins.
    #[serde(rename = "plugins.manage")]
    PluginsManage,
    #[serde(rename = "audit.read")]
    AuditRead,
    /// See customers' identity (support work).
    #[serde(rename = "customers.read")]
    CustomersRead,
    /// Import customers.
    #[serde(rename = "customers.write")]
    CustomersWrite,
    /// Act on privacy requests (erasure on a verified request).
    #[serde(rename = "privacy.manage")]
    PrivacyManage,
    #[serde(rename = "orders.read")]
    OrdersRead,
    /// Change orders' state (cancel, mark shipped, refund).
    #[serde(rename = "orders.write")]
    OrdersWrite,
    /// Create staff users, change roles, make and revoke their tokens.
    #[serde(rename = "staff.manage")]
    StaffManage,
    /// See how the cluster runs: the event bus, its dead letters, the job queue.
    #[serde(rename = "operations.read")]
    OperationsRead,
    /// Replay dead letters, retry or discard dead jobs.
    #[serde(rename = "operations.manage")]
    OperationsManage,
}

impl Permission {
    pub const ALL: [Permission; 16] = [
        Permission::CatalogRead,
        Permission::CatalogWrite,
        Permission::InventoryRead,
        Permission::InventoryWrite,
        Permission::SettingsWrite,
        Permission::PluginsRead,
        Permission::PluginsManage,
        Permission::AuditRead,
        Permission::CustomersRead,
        Permission::CustomersWrite,
        Permission::PrivacyManage,
        Permission::OrdersRead,
        Permission::OrdersWrite,
        Permission::StaffManage,
        Permission::OperationsRead,
        Permission::OperationsManage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::CatalogRead => "catalog.read",
            Permission::CatalogWrite => "catalog.write",
            Permission::InventoryRead => "inventory.read",
            Permission::InventoryWrite => "inventory.write",
            Permission::SettingsWrite => "settings.write",
            Permission::PluginsRead => "plugins.read",
            Permission::PluginsManage => "plugins.manage",
            Permission::AuditRead => "audit.read",
            Permission::CustomersRead => "customers.read",
            Permission::CustomersWrite => "customers.write",
            Permission::PrivacyManage => "privacy.manage",
            Permission::OrdersRead => "orders.read",
            Permission::OrdersWrite => "orders.write",
            Permission::StaffManage => "staff.manage",
            Permission::OperationsRead => "operations.read",
            Permission::OperationsManage => "operations.manage",
        }
    }
}

/// A staff user's role: a fixed set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing staff.
    Owner,
    /// Runs the store: everything except managing staff.
    Admin,
    /// Catalog and stock.
    Catalog,
    /// Customers, their orders and privacy requests; reads the catalog and stock to
    /// answer questions.
    Support,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Catalog, Role::Support];

    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Catalog => "catalog",
            Role::Support => "support",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == text)
    }

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Owner => &Permission::ALL,
            Role::Admin => &[
                CatalogRead,
                CatalogWrite,
                InventoryRead,
                InventoryWrite,
                SettingsWrite,
                PluginsRead,
                PluginsManage,
                AuditRead,
                CustomersRead,
                CustomersWrite,
                PrivacyManage,
                OrdersRead,
                OrdersWrite,
                OperationsRead,
                OperationsManage,
            ],
            // No plugins, not even to read: they price, take payments and hold the
            // store's credentials, which are the admins' concern.
            Role::Catalog => &[CatalogRead, CatalogWrite, InventoryRead, InventoryWrite],
            Role::Support => &[
                CatalogRead,
                InventoryRead,
                CustomersRead,
                PrivacyManage,
                OrdersRead,
                OrdersWrite,
            ],
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

/// What an admin route asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any signed-in staff user (their own profile, for instance).
    AnyStaff,
    Needs(Permission),
}

/// The access an admin route needs, by method and route template relative to
/// `/api/v1/admin` (e.g. `/products/{id}`). `None`: the route is not in the table and
/// is refused to everyone.
pub fn required(method: &Method, route: &str) -> Option<Access> {
    use Permission::*;
    let read = method == Method::GET || method == Method::HEAD;
    let section = route
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let permission = match section {
        "me" => return Some(Access::AnyStaff),
        "products" | "variants" | "categories" | "reviews" if read => CatalogRead,
        "products" | "variants" | "categories" | "reviews" => CatalogWrite,
        "locations" | "lots" | "stock-ledger" if read => InventoryRead,
        "locations" | "lots" => InventoryWrite,
        // The list of recalls is stock; a recall's report names customers and orders.
        "recalls" if read && route == "/recalls" => InventoryRead,
        "recalls" if read => CustomersRead,
        "recalls" => InventoryWrite,
        "settings" if read => InventoryRead,
        "settings" => SettingsWrite,
        "plugins" if read => PluginsRead,
        "plugins" => PluginsManage,
        "audit" if read => AuditRead,
        "customers" if route.ends_with("/erasure") => PrivacyManage,
        "customers" if read => CustomersRead,
        "customers" => CustomersWrite,
        "privacy-requests" => PrivacyManage,
        "orders" if read => OrdersRead,
        "orders" => OrdersWrite,
        "subscriptions" if read => OrdersRead,
        "subscriptions" => OrdersWrite,
        "shipping-rates" | "tax-rates" if read => OrdersRead,
        "shipping-rates" | "tax-rates" => SettingsWrite,
        "notifications" if read => CustomersRead,
        "notifications" => CustomersWrite,
        "notification-templates" | "notification-campaigns" => SettingsWrite,
        "staff" => StaffManage,
        "bus" | "jobs" if read => OperationsRead,
        "bus" | "jobs" => OperationsManage,
        // Imports write the catalog, stock, customers and orders at once.
        "imports" if read => OperationsRead,
        "imports" => OperationsManage,
        _ => return None,
    };
    Some(Access::Needs(permission))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_hold_every_permission_and_only_owners_manage_staff() {
        for permission in Permission::ALL {
            assert!(Role::Owner.allows(permission), "{}", permission.name());
        }
        for role in [Role::Admin, Role::Catalog, Role::Support] {
            assert!(!role.allows(Permission::StaffManage), "{}", role.name());
        }
    }

    #[test]
    fn every_role_lacks_something_but_the_owner() {
        for role in [Role::Admin, Role::Catalog, Role::Support] {
            assert!(role.permissions().len() < Permission::ALL.len());
        }
    }

    #[test]
    fn reads_and_writes_need_different_permissions() {
        assert_eq!(
            required(&Method::GET, "/products/{id}"),
            Some(Access::Needs(Permission::CatalogRead))
        );
        assert_eq!(
            required(&Method::PATCH, "/products/{id}"),
            Some(Access::Needs(Permission::CatalogWrite))
        );
        assert_eq!(required(&Method::GET, "/nothing-here"), None);
        assert_eq!(required(&Method::GET, "/me"), Some(Access::AnyStaff));
    }

    #[test]
    fn roles_parse_back_from_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
