//! The pod.yaml as serde-saphyr deserializes it (filled in by the spec work).
