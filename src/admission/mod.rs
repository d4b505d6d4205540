//! AdmissionReview in, AdmissionReview out. (in progress)
