namespace station::pki {}
