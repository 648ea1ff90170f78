"""Provider adapters: one module per SaaS platform, each a pure request builder, a pure response
classifier and the authentication it needs."""
