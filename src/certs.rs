//! `pitrguard certs`: a development CA and serving certificate. (in progress)
