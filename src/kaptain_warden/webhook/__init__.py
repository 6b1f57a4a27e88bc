"""Admission server: HTTP and AdmissionReview glue only; decisions come from `policies`."""
