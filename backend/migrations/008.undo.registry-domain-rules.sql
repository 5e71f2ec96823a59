DROP TABLE IF EXISTS repository_domain_rules;
