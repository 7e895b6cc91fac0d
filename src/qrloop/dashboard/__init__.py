"""The merchant dashboard (`/dashboard/`): server-rendered pages for people, who log in with
an email and a password and act in one of three roles.

* `users`     people, roles (owner, manager, viewer) and one-time invitations (PostgreSQL)
* `passwords` argon2id, off the event loop
* `sessions`  server-side sessions in Redis, behind an HttpOnly cookie
* `limits`    login attempts per account and per client address
* `auth`      the `viewer` dependency (`requires(Role.X)`), CSRF checks, cookies
* `pages`     rendering (Jinja2 templates under web/templates/dashboard), security headers
* `nav`       the navigation entries; `routes` the router and its list of page controllers
* `*_pages`   the pages themselves, each over the services the API uses

Adding a section: a Controller whose handlers take `viewer: Viewer` from
`dependencies=requires(Role.X)` and answer `pages.render(viewer, "dashboard/x.html", ...)`,
listed in `routes.PAGES`, with its entry in `nav.ENTRIES`; its template extends
"dashboard/layout.html" and its forms carry `{{ forms.csrf_input() }}`.
"""
