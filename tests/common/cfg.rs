//! Test configs as data: a bgd.yaml is a JSON value edited by key path and written as YAML,
//! so a test that changes a key changes that key, and a key that does not exist any more is
//! an unknown-key error from bgd, never a silent no-op.

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Cfg(pub Value);

impl Cfg {
    pub fn new(value: Value) -> Cfg {
        assert!(value.is_object(), "a config is a mapping: {value}");
        Cfg(value)
    }

    /// Sets the key at a dotted path (`readiness.deadline`, `container.env.FEATURE`),
    /// making the mappings on the way.
    pub fn set(self, path: &str, value: impl Into<Value>) -> Cfg {
        let keys: Vec<&str> = path.split('.').collect();
        self.set_at(&keys, value)
    }

    /// Like `set`, for keys that contain dots themselves (labels).
    pub fn set_at(mut self, keys: &[&str], value: impl Into<Value>) -> Cfg {
        let (last, parents) = keys.split_last().expect("a key path");
        let mut node = &mut self.0;
        for k in parents {
            let map = node
                .as_object_mut()
                .unwrap_or_else(|| panic!("{k}: its parent is not a mapping"));
            node = map.entry(k.to_string()).or_insert_with(|| json!({}));
        }
        node.as_object_mut()
            .unwrap_or_else(|| panic!("{last}: its parent is not a mapping"))
            .insert(last.to_string(), value.into());
        self
    }

    /// Removes the key at a dotted path; it must be there.
    pub fn unset(mut self, path: &str) -> Cfg {
        let keys: Vec<&str> = path.split('.').collect();
        let (last, parents) = keys.split_last().expect("a key path");
        let mut node = &mut self.0;
        for k in parents {
            node = node
                .get_mut(*k)
                .unwrap_or_else(|| panic!("{path}: not in the config (no {k})"));
        }
        let removed = node.as_object_mut().and_then(|m| m.remove(*last));
        assert!(removed.is_some(), "{path}: not in the config");
        self
    }

    pub fn get(&self, path: &str) -> &Value {
        path.split('.')
            .try_fold(&self.0, |node, k| node.get(k))
            .unwrap_or_else(|| panic!("{path}: not in the config"))
    }

    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.0).expect("a config serialises")
    }
}
