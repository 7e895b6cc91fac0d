"""The dashboard's navigation: one entry per section, shown to the roles that may open it.

A module that adds a section adds its entry here and its controller to `routes.PAGES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrloop.dashboard.users import Role


@dataclass(frozen=True, slots=True)
class NavEntry:
    label: str
    href: str  # the section's first page
    role: Role  # the least role that sees the entry (the pages check it again)
    also: tuple[str, ...] = ()  # other paths whose pages belong to the section

    def holds(self, path: str) -> bool:
        """Whether the page at `path` is in this section (the navigation marks it)."""
        return any(path.startswith(prefix) for prefix in (self.href, *self.also))


ENTRIES: tuple[NavEntry, ...] = (
    NavEntry("Campaigns", "/dashboard/campaigns", Role.VIEWER, also=("/dashboard/orders",)),
    NavEntry("Redemptions", "/dashboard/redemptions", Role.VIEWER),
    NavEntry("Settlements", "/dashboard/settlements", Role.VIEWER),
    NavEntry("Stores", "/dashboard/stores", Role.MANAGER, also=("/dashboard/terminals",)),
    NavEntry("Agreements", "/dashboard/agreements", Role.MANAGER),
    NavEntry("Webhooks", "/dashboard/webhooks", Role.OWNER),
    NavEntry("API keys", "/dashboard/api-keys", Role.OWNER),
    NavEntry("Users", "/dashboard/users", Role.OWNER),
)


def entries_for(role: Role) -> list[NavEntry]:
    return [entry for entry in ENTRIES if role.covers(entry.role)]
