"""Drop-in facades for other energy tools' APIs, backed by lem."""
