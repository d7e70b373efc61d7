DROP INDEX transactions_by_account;
DROP TABLE transactions;
