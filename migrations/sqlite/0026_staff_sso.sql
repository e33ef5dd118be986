-- Staff single sign-on with an OpenID Connect provider (issue 20): filled in by the change that builds it.
SELECT 1;
