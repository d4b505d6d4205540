//! What the fuzz targets share: the bundled examples as the inventory every decision is judged
//! against, and the two policies the differential tests use (tests/module_host.rs).

use std::path::PathBuf;
use std::sync::OnceLock;

use pitrguard::core::{BaseEdge, Index, Policy};
use serde_json::Value;

/// `examples/` of the checkout this crate was built in.
pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The example inventory (Backups, ActionSets, Clusters of `examples/`), loaded once.
pub fn example_index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(load_example_index)
}

/// The example inventory, loaded anew.
pub fn load_example_index() -> Index {
    let docs = pitrguard::load::read_documents(&[examples()]).expect("examples/ loads");
    pitrguard::load::build_index(&docs).expect("examples/ is an inventory")
}

/// The default policy and one with every setting changed (as in tests/module_host.rs).
pub fn policies() -> &'static [Policy; 2] {
    static POLICIES: OnceLock<[Policy; 2]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        [
            Policy::default(),
            Policy {
                default_volume_restore_policy: "Serial".into(),
                edge_warning: chrono::TimeDelta::seconds(3600),
                base_edge: BaseEdge::Inclusive,
            },
        ]
    })
}

/// A cheap, stable pick between the two policies for one input.
pub fn policy_for(data: &[u8]) -> &'static Policy {
    let sum = data.iter().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(*b)));
    &policies()[(sum & 1) as usize]
}

/// Whether `text` has an object with a key twice (a JSON tree keeps only the last).
pub fn repeats_a_key(text: &str, tree: &Value) -> bool {
    fn members(v: &Value) -> usize {
        match v {
            Value::Object(o) => o.len() + o.values().map(members).sum::<usize>(),
            Value::Array(a) => a.iter().map(members).sum(),
            _ => 0,
        }
    }
    // Every member is a `"key":` in the text; a tree with fewer lost some to repeats.
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some((_, v)) = map.next_entry::<serde::de::IgnoredAny, Counted>()? {
                n += 1 + v.0;
            }
            Ok(n)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(v) = seq.next_element::<Counted>()? {
                n += v.0;
            }
            Ok(n)
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
    }
    struct Counted(usize);
    impl<'de> serde::Deserialize<'de> for Counted {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Count).map(Counted)
        }
    }
    serde_json::from_str::<Counted>(text).map_or(true, |c| c.0 != members(tree))
}
