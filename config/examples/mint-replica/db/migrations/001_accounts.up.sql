CREATE TABLE accounts (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  institution TEXT NOT NULL,
  balance_cents INTEGER NOT NULL DEFAULT 0
);
