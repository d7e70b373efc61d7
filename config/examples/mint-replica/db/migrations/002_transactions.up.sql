CREATE TABLE transactions (
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  posted_on TEXT NOT NULL,
  amount_cents INTEGER NOT NULL,
  category TEXT
);
CREATE INDEX transactions_by_account ON transactions(account_id, posted_on);
