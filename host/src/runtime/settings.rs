//! The `operator:plugin/config` capability: a plugin reads its own settings
//! (`[plugins.NAME.settings]` in the host's configuration) and the names of the endpoints it was
//! granted, and nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::bindings::wit_config;

/// The settings of one plugin, shared by all its calls.
#[derive(Clone, Debug, Default)]
pub struct PluginSettings {
    values: Arc<BTreeMap<String, String>>,
    endpoints: Arc<Vec<String>>,
}

impl PluginSettings {
    /// Settings from the plugin's configuration table.
    pub fn new(values: BTreeMap<String, String>) -> PluginSettings {
        PluginSettings { values: Arc::new(values), endpoints: Arc::new(Vec::new()) }
    }

    /// With the names of the endpoints the plugin's grants name.
    pub fn with_endpoints(mut self, endpoints: Vec<String>) -> PluginSettings {
        self.endpoints = Arc::new(endpoints);
        self
    }

    /// The value of one setting.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// All settings.
    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

impl wit_config::Host for PluginSettings {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.values.get(&key).cloned())
    }

    fn granted_endpoints(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.endpoints.as_ref().clone())
    }
}

/// Projects [`PluginSettings`] out of a store's data.
pub trait HasSettings: Send + 'static {
    /// The plugin's settings.
    fn settings(&mut self) -> &mut PluginSettings;
}

struct SettingsData;
impl HasData for SettingsData {
    type Data<'a> = &'a mut PluginSettings;
}

/// Links `operator:plugin/config`.
pub fn add_to_linker<T: HasSettings>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit_config::add_to_linker::<T, SettingsData>(linker, |t| t.settings())
}
