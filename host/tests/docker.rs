//! The compose deployment in `docker/`, checked without Docker: every file parses; every address
//! (depends_on, Prometheus targets, the operator's endpoints, go-ycsb's and TiKV's PD lists,
//! Grafana's datasource, healthchecks) names a service of the compose file and a port that service
//! listens on; the operator's configuration parses, resolves and grants every endpoint the TiKV
//! plugin asks for; the image builds `operator-host` and runs the configuration the compose file
//! mounts; the Grafana dashboard queries only metrics the operator exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use operator_host::config::Config;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Files

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ sits in the workspace root").to_path_buf()
}

fn docker_dir() -> PathBuf {
    repo().join("docker")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    yaml_serde::from_str(&read(path)).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn compose() -> Value {
    yaml(&docker_dir().join("compose.yaml"))
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    let services = compose["services"].as_object().expect("compose.yaml has a services mapping");
    services.iter().map(|(name, service)| (name.clone(), service.clone())).collect()
}

/// A string, or a number written without quotes (`expose: [2379]`).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("expected a string or a number, found {other}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

// ---------------------------------------------------------------------------------------------
// Services: command lines, mounts, ports

/// The command line of a service as a list of arguments (compose's list form; the string form is
/// split on whitespace).
fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
        other => strings(other),
    }
}

/// The value of `--name=value` or `--name value`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let with_value = format!("--{name}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix(&with_value) {
            Some(value)
        } else if *arg == long {
            args.get(i + 1).map(String::as_str)
        } else {
            None
        }
    })
}

fn required_flag<'a>(service_name: &str, args: &'a [String], name: &str) -> &'a str {
    flag(args, name).unwrap_or_else(|| panic!("{service_name}: no --{name} in its command {args:?}"))
}

/// `host:port` or `scheme://host:port[/...]` as host and port (the scheme's default port when
/// there is none).
fn host_port(address: &str) -> (String, u16) {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, address),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) => {
            (host.to_owned(), port.parse().unwrap_or_else(|_| panic!("`{address}` has a bad port `{port}`")))
        }
        None => match scheme {
            Some("http") => (authority.to_owned(), 80),
            Some("https") => (authority.to_owned(), 443),
            _ => panic!("`{address}` names no port"),
        },
    }
}

/// The service's bind mounts and named volumes: (source, target). A bind mount's source is
/// resolved against `docker/`.
#[derive(Debug)]
enum Mount {
    Bind { source: PathBuf, target: String },
    Volume { name: String, target: String },
}

fn mounts(service_name: &str, service: &Value) -> Vec<Mount> {
    let mut out = Vec::new();
    for entry in service["volumes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let (source, target) = match entry {
            Value::String(short) => {
                let parts: Vec<&str> = short.split(':').collect();
                assert!(parts.len() >= 2, "{service_name}: volume `{short}` has no target");
                (parts[0].to_owned(), parts[1].to_owned())
            }
            Value::Object(long) => (
                long.get("source").map(text).unwrap_or_default(),
                long.get("target").map(text).unwrap_or_else(|| panic!("{service_name}: a volume has no target")),
            ),
            other => panic!("{service_name}: unexpected volume entry {other}"),
        };
        if source.starts_with('.') || source.starts_with('/') {
            out.push(Mount::Bind { source: docker_dir().join(source), target });
        } else {
            out.push(Mount::Volume { name: source, target });
        }
    }
    out
}

/// The file of this repository a service sees at `container_path`, through a bind mount of it
/// or of a directory above it.
fn mounted_file(service_name: &str, service: &Value, container_path: &str) -> PathBuf {
    for mount in mounts(service_name, service) {
        if let Mount::Bind { source, target } = mount {
            if container_path == target {
                return source;
            }
            if let Some(rest) = container_path.strip_prefix(&format!("{}/", target.trim_end_matches('/'))) {
                return source.join(rest);
            }
        }
    }
    panic!("{service_name}: nothing from the repository is mounted at {container_path}")
}

fn has_volume_at(service_name: &str, service: &Value, container_path: &str) -> bool {
    mounts(service_name, service).iter().any(|m| matches!(m, Mount::Volume { target, .. } if target == container_path))
}

/// The operator's configuration file as its service mounts it, with the path it is mounted at.
fn operator_config_file(compose: &Value) -> (String, PathBuf) {
    let services = services(compose);
    let (name, operator) = operator_service(&services);
    let config_path =
        flag(&command(operator), "config").unwrap_or_else(|| panic!("{name}: no --config in its command")).to_owned();
    let file = mounted_file(name, operator, &config_path);
    (config_path, file)
}

/// The service built from this repository.
fn operator_service(services: &BTreeMap<String, Value>) -> (&str, &Value) {
    let built: Vec<_> = services.iter().filter(|(_, s)| !s["build"].is_null()).collect();
    assert_eq!(built.len(), 1, "exactly one service is built from the repository (the operator)");
    (built[0].0.as_str(), built[0].1)
}

fn operator_toml(compose: &Value) -> (toml::Table, String) {
    let (_, file) = operator_config_file(compose);
    let text = read(&file);
    let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", file.display()));
    (table, text)
}

/// The ports each service listens on inside the network, from its own configuration: its flags,
/// Grafana's environment, the operator's `[api] listen`.
fn listening_ports(compose: &Value) -> BTreeMap<String, BTreeSet<u16>> {
    let all = services(compose);
    let operator_name = operator_service(&all).0.to_owned();
    let (operator_config, _) = operator_toml(compose);
    let mut out = BTreeMap::new();
    for (name, service) in services(compose) {
        let args = command(&service);
        let mut ports = BTreeSet::new();
        for url_list in ["client-urls", "peer-urls"] {
            for url in flag(&args, url_list).map(|v| v.split(',').collect::<Vec<_>>()).unwrap_or_default() {
                ports.insert(host_port(url).1);
            }
        }
        for address in ["addr", "status-addr", "web.listen-address"] {
            if let Some(value) = flag(&args, address) {
                ports.insert(host_port(value).1);
            }
        }
        if let Some(port) = service["environment"].get("GF_SERVER_HTTP_PORT") {
            ports.insert(text(port).parse().expect("GF_SERVER_HTTP_PORT is a port"));
        }
        if name == operator_name {
            let listen = operator_config
                .get("api")
                .and_then(|api| api.get("listen"))
                .and_then(toml::Value::as_str)
                .expect("the operator's configuration sets [api] listen");
            ports.insert(host_port(listen).1);
        }
        out.insert(name, ports);
    }
    out
}

/// Checks that `address` names a service and a port it listens on.
fn assert_reaches(listens: &BTreeMap<String, BTreeSet<u16>>, what: &str, address: &str) {
    let (host, port) = host_port(address);
    let ports = listens
        .get(&host)
        .unwrap_or_else(|| panic!("{what}: `{address}` names `{host}`, which is not a service of compose.yaml"));
    assert!(ports.contains(&port), "{what}: `{address}`: {host} listens on {ports:?}, not {port}");
}

// ---------------------------------------------------------------------------------------------
// The compose file

#[test]
fn the_compose_file_defines_the_cluster() {
    let compose = compose();
    let services = services(&compose);
    let with_image = |image: &str| services.iter().filter(|(_, s)| s["image"] == image).count();
    assert_eq!(with_image("pingcap/pd:v8.5.1"), 3, "three PD members");
    assert_eq!(with_image("pingcap/tikv:v8.5.1"), 3, "three TiKV stores");
    for (name, service) in &services {
        let image = text(&service["image"]);
        if image.starts_with("${") {
            // Only the load generator's image is overridable: no go-ycsb version tag could be confirmed.
            assert!(image.contains("pingcap/go-ycsb"), "{name}: image `{image}` should be pinned");
            continue;
        }
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or_default();
        assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{name}: image `{image}` is not pinned");
    }
    for prefix in ["prom/prometheus:v", "grafana/grafana:"] {
        assert!(services.values().any(|s| text(&s["image"]).starts_with(prefix)), "no {prefix}… service");
    }
    assert!(
        services.values().any(|s| text(&s["image"]).contains("pingcap/go-ycsb")),
        "no go-ycsb service loading the cluster"
    );
}

#[test]
fn depends_on_names_services_and_healthy_conditions_have_healthchecks() {
    let compose = compose();
    let services = services(&compose);
    for (name, service) in &services {
        let dependencies: Vec<(String, Option<String>)> = match &service["depends_on"] {
            Value::Null => Vec::new(),
            Value::Array(names) => names.iter().map(|n| (text(n), None)).collect(),
            Value::Object(long) => {
                long.iter().map(|(n, spec)| (n.clone(), spec["condition"].as_str().map(str::to_owned))).collect()
            }
            other => panic!("{name}: unexpected depends_on {other}"),
        };
        for (dependency, condition) in dependencies {
            let target = services
                .get(&dependency)
                .unwrap_or_else(|| panic!("{name} depends on `{dependency}`, which is not a service"));
            if condition.as_deref() == Some("service_healthy") {
                assert!(
                    !target["healthcheck"].is_null(),
                    "{name} waits for {dependency} to be healthy: it has no healthcheck"
                );
            }
        }
    }
}

#[test]
fn every_port_a_service_exposes_or_publishes_is_one_it_listens_on() {
    let compose = compose();
    let listens = listening_ports(&compose);
    for (name, service) in services(&compose) {
        let mut declared: Vec<u16> = strings(&service["expose"]).iter().map(|p| p.parse().unwrap()).collect();
        for published in service["ports"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let container = match published {
                Value::Object(long) => text(&long["target"]),
                short => text(short).rsplit(':').next().unwrap_or_default().split('/').next().unwrap().to_owned(),
            };
            declared.push(container.parse().unwrap_or_else(|_| panic!("{name}: bad port {published}")));
        }
        for port in declared {
            assert!(listens[&name].contains(&port), "{name} exposes {port} but listens on {:?}", listens[&name]);
        }
        // Healthchecks ask the service itself.
        let check = service["healthcheck"]["test"].to_string();
        for (i, _) in check.match_indices("http://127.0.0.1:") {
            let port: String =
                check[i + "http://127.0.0.1:".len()..].chars().take_while(char::is_ascii_digit).collect();
            let port: u16 = port.parse().unwrap();
            assert!(
                listens[&name].contains(&port),
                "{name}'s healthcheck asks port {port}, it listens on {:?}",
                listens[&name]
            );
        }
    }
}

#[test]
fn volumes_are_declared_and_bind_mounts_exist() {
    let compose = compose();
    let declared: BTreeSet<String> =
        compose["volumes"].as_object().map(|v| v.keys().cloned().collect()).unwrap_or_default();
    let mut used = BTreeSet::new();
    for (name, service) in services(&compose) {
        for mount in mounts(&name, &service) {
            match mount {
                Mount::Bind { source, target } => {
                    assert!(source.exists(), "{name} mounts {} at {target}; it does not exist", source.display())
                }
                Mount::Volume { name: volume, target } => {
                    assert!(
                        declared.contains(&volume),
                        "{name} mounts volume `{volume}` at {target}; it is not declared"
                    );
                    used.insert(volume);
                }
            }
        }
    }
    assert_eq!(used, declared, "every declared volume is used");
}

#[test]
fn pd_members_form_one_cluster_and_advertise_themselves() {
    let compose = compose();
    let listens = listening_ports(&compose);
    let services = services(&compose);
    let pds: Vec<_> = services.iter().filter(|(_, s)| text(&s["image"]).starts_with("pingcap/pd:")).collect();
    let mut clusters = BTreeSet::new();
    for (name, service) in &pds {
        let args = command(service);
        assert_eq!(required_flag(name, &args, "name"), name.as_str(), "{name}: --name is the service name");
        assert!(
            flag(&args, "data-dir").is_some_and(|dir| has_volume_at_or_under(name, service, dir)),
            "{name}: --data-dir on a volume"
        );
        for (flag_name, listen_flag) in [("advertise-client-urls", "client-urls"), ("advertise-peer-urls", "peer-urls")]
        {
            let advertised = required_flag(name, &args, flag_name);
            assert_eq!(host_port(advertised).0, name.as_str(), "{name}: --{flag_name} names the service");
            assert_eq!(
                host_port(advertised).1,
                host_port(required_flag(name, &args, listen_flag)).1,
                "{name}: --{flag_name} port"
            );
            assert_reaches(&listens, &format!("{name} --{flag_name}"), advertised);
        }
        let initial = required_flag(name, &args, "initial-cluster");
        let members: BTreeMap<&str, &str> =
            initial.split(',').map(|m| m.split_once('=').expect("--initial-cluster is name=url,…")).collect();
        assert_eq!(
            members.get(name.as_str()),
            Some(&required_flag(name, &args, "advertise-peer-urls")),
            "{name} is in --initial-cluster"
        );
        for (member, url) in &members {
            assert_reaches(&listens, &format!("{name} --initial-cluster {member}"), url);
            assert_eq!(host_port(url).0, *member, "{name} --initial-cluster: member {member} is at its own service");
        }
        clusters.insert(initial.to_owned());
    }
    assert_eq!(clusters.len(), 1, "every PD member has the same --initial-cluster");
    let members = clusters.first().unwrap().split(',').count();
    assert_eq!(members, pds.len(), "--initial-cluster lists every PD service");
}

fn has_volume_at_or_under(service_name: &str, service: &Value, path: &str) -> bool {
    mounts(service_name, service)
        .iter()
        .any(|m| matches!(m, Mount::Volume { target, .. } if path == target || path.starts_with(&format!("{target}/"))))
}

/// The TiKV services and their `--advertise-status-addr`.
fn tikv_status_addresses(compose: &Value) -> BTreeMap<String, String> {
    services(compose)
        .into_iter()
        .filter(|(_, s)| text(&s["image"]).starts_with("pingcap/tikv:"))
        .map(|(name, s)| {
            let address = required_flag(&name, &command(&s), "advertise-status-addr").to_owned();
            (name, address)
        })
        .collect()
}

#[test]
fn tikv_stores_reach_pd_and_advertise_themselves() {
    let compose = compose();
    let listens = listening_ports(&compose);
    let services = services(&compose);
    for (name, service) in services.iter().filter(|(_, s)| text(&s["image"]).starts_with("pingcap/tikv:")) {
        let args = command(service);
        for (advertised, listen) in [("advertise-addr", "addr"), ("advertise-status-addr", "status-addr")] {
            let address = required_flag(name, &args, advertised);
            assert_eq!(host_port(address).0, name.as_str(), "{name}: --{advertised} names the service");
            assert_eq!(
                host_port(address).1,
                host_port(required_flag(name, &args, listen)).1,
                "{name}: --{advertised} port"
            );
            assert_reaches(&listens, &format!("{name} --{advertised}"), address);
        }
        assert_eq!(
            required_flag(name, &args, "status-addr"),
            "0.0.0.0:20180",
            "{name}: status port on every interface"
        );
        for pd in required_flag(name, &args, "pd-endpoints").split(',') {
            assert_reaches(&listens, &format!("{name} --pd-endpoints"), pd);
        }
        assert!(
            has_volume_at_or_under(name, service, required_flag(name, &args, "data-dir")),
            "{name}: --data-dir on a volume"
        );
        if let Some(config) = flag(&args, "config") {
            let file = mounted_file(name, service, config);
            read(&file).parse::<toml::Table>().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
}

#[test]
fn the_load_generator_reaches_pd() {
    let compose = compose();
    let listens = listening_ports(&compose);
    let services = services(&compose);
    let (name, ycsb) = services.iter().find(|(_, s)| text(&s["image"]).contains("go-ycsb")).expect("a go-ycsb service");
    let script = format!("{} {}", strings(&ycsb["entrypoint"]).join(" "), command(ycsb).join(" "));
    for phase in ["load tikv", "run tikv"] {
        assert!(script.contains(phase), "{name}: no `go-ycsb {phase}` in {script}");
    }
    let pd_lists: Vec<&str> = script.split_whitespace().filter_map(|word| word.strip_prefix("tikv.pd=")).collect();
    assert!(!pd_lists.is_empty(), "{name}: no -p tikv.pd=… in {script}");
    for list in pd_lists {
        for pd in list.split(',') {
            assert_reaches(&listens, &format!("{name} tikv.pd"), pd);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[test]
fn prometheus_scrapes_pd_tikv_status_ports_and_the_operator() {
    let compose = compose();
    let listens = listening_ports(&compose);
    let services = services(&compose);
    let (name, prometheus) =
        services.iter().find(|(_, s)| text(&s["image"]).starts_with("prom/prometheus:")).expect("a Prometheus service");
    let config_path = required_flag(name, &command(prometheus), "config.file").to_owned();
    let config_file = mounted_file(name, prometheus, &config_path);
    assert_eq!(config_file, docker_dir().join("prometheus/prometheus.yml"));
    let config = yaml(&config_file);

    let mut targets_by_job: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for job in config["scrape_configs"].as_array().expect("scrape_configs") {
        let job_name = text(&job["job_name"]);
        for static_config in job["static_configs"].as_array().expect("static_configs") {
            for target in strings(&static_config["targets"]) {
                assert_reaches(&listens, &format!("prometheus job {job_name}"), &target);
                targets_by_job.entry(job_name.clone()).or_default().insert(target);
            }
        }
    }

    // PD: every member's client URL.
    let pd_targets: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| text(&s["image"]).starts_with("pingcap/pd:"))
        .map(|(n, s)| {
            let (host, port) = host_port(required_flag(n, &command(s), "advertise-client-urls"));
            format!("{host}:{port}")
        })
        .collect();
    assert!(
        targets_by_job.values().any(|t| *t == pd_targets),
        "a job scrapes exactly {pd_targets:?}: {targets_by_job:?}"
    );

    // TiKV: exactly the status addresses PD reports, which the plugin matches to `instance`.
    let tikv_targets: BTreeSet<String> = tikv_status_addresses(&compose).into_values().collect();
    assert!(
        targets_by_job.values().any(|t| *t == tikv_targets),
        "a job scrapes exactly the stores' status addresses {tikv_targets:?}: {targets_by_job:?}"
    );

    // The operator's own /metrics, on its API port.
    let (operator_name, _) = operator_service(&services);
    assert!(
        targets_by_job.values().flatten().any(|t| host_port(t).0 == operator_name),
        "no job scrapes the operator: {targets_by_job:?}"
    );

    // The plugin's one-minute rates need two samples a minute.
    let interval = text(&config["global"]["scrape_interval"]);
    let seconds: u64 = interval.strip_suffix('s').and_then(|s| s.parse().ok()).expect("scrape_interval in seconds");
    assert!(seconds <= 30, "scrape_interval {interval} is too long for rate(...[1m])");
}

// ---------------------------------------------------------------------------------------------
// The operator: configuration, grants, image

/// The operator's configuration as `Config` reads it.
fn operator_config() -> Config {
    let (_, text) = operator_toml(&compose());
    let config = Config::parse(&text, "docker/operator/operator.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.api.listen, "0.0.0.0:7380",
        "[api] listen must be 0.0.0.0:7380 inside the container, for Prometheus to scrape it"
    );
    config
}

#[test]
fn the_operator_configuration_resolves_and_its_endpoints_are_services() {
    let compose = compose();
    let listens = listening_ports(&compose);
    let config = operator_config();
    let resolved = config.resolve().unwrap_or_else(|e| panic!("docker/operator/operator.toml: {e:#}"));
    assert_eq!(config.subject, "tikv");
    for endpoint in ["pd", "prometheus"] {
        assert!(resolved.endpoints.contains_key(endpoint), "[endpoints.{endpoint}] is configured");
    }
    assert_eq!(config.endpoints["pd"].urls.len(), 3, "every PD member, for failover");
    for (name, endpoint) in &config.endpoints {
        for url in &endpoint.urls {
            assert_reaches(&listens, &format!("[endpoints.{name}]"), url);
        }
    }
    assert!(resolved.grants.contains_key(&config.subject), "[plugins.{}] grants something", config.subject);

    // OPERATOR_ENDPOINTS in the environment would replace endpoints' URLs: they must be reachable too.
    let services = services(&compose);
    let (operator_name, operator) = operator_service(&services);
    if let Some(endpoints) = operator["environment"].get("OPERATOR_ENDPOINTS") {
        for endpoint in text(endpoints).split(';') {
            let (name, urls) = endpoint.split_once('=').expect("OPERATOR_ENDPOINTS holds NAME=URL[,URL...]");
            for url in urls.split(',') {
                assert_reaches(&listens, &format!("{operator_name} OPERATOR_ENDPOINTS {name}"), url);
            }
        }
    }
}

/// An origin pattern (`scheme://host:port`, each part possibly `*`) matching an origin.
fn origin_matches(pattern: &str, scheme: &str, host: &str, port: u16) -> bool {
    let (p_scheme, rest) = pattern.split_once("://").expect("an origin pattern has a scheme");
    let (p_host, p_port) = rest.rsplit_once(':').unwrap_or((rest, if p_scheme == "https" { "443" } else { "80" }));
    (p_scheme == "*" || p_scheme == scheme)
        && (p_host == "*"
            || p_host.eq_ignore_ascii_case(host)
            || p_host.strip_prefix("*.").is_some_and(|d| host.ends_with(&format!(".{d}"))))
        && (p_port == "*" || p_port.parse::<u16>().is_ok_and(|p| p == port))
}

/// Whether a granted origin pattern lies within a requested one.
fn origin_within(granted: &str, requested: &str) -> bool {
    let (scheme, rest) = granted.split_once("://").unwrap();
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "80"));
    let schemes: Vec<&str> = if scheme == "*" { vec!["http", "https"] } else { vec![scheme] };
    let (r_scheme, r_rest) = requested.split_once("://").unwrap();
    let (r_host, r_port) = r_rest.rsplit_once(':').unwrap_or((r_rest, "80"));
    schemes.iter().all(|s| r_scheme == "*" || r_scheme == *s)
        && (r_host == "*" || r_host.eq_ignore_ascii_case(host))
        && (r_port == "*" || r_port == port)
}

fn methods_cover(granted: &[String], requested: &[String]) -> bool {
    granted.iter().any(|m| m == "*") || requested.iter().all(|r| granted.iter().any(|g| g.eq_ignore_ascii_case(r)))
}

fn path_covers(granted: &str, requested: &str) -> bool {
    granted == requested
        || granted == "/**"
        || granted
            .strip_suffix("/**")
            .is_some_and(|prefix| requested == prefix || requested.starts_with(&format!("{prefix}/")))
}

#[test]
fn every_capability_the_tikv_plugin_asks_for_is_granted() {
    let config = operator_config();
    config.resolve().unwrap();
    let grants = &config.plugins.get("tikv").expect("[plugins.tikv]").grants;
    let manifest_path = repo().join("plugins/tikv/plugin.toml");
    let manifest: toml::Table = read(&manifest_path).parse().unwrap();
    let capabilities = manifest["capabilities"].as_array().expect("the manifest lists capabilities");
    assert!(!capabilities.is_empty());
    for capability in capabilities {
        let list = |key: &str| -> Vec<String> {
            capability[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        let (methods, paths) = (list("methods"), list("paths"));
        let covered = |grant_methods: &[String], grant_paths: &[String]| {
            methods_cover(grant_methods, &methods)
                && paths.iter().all(|p| grant_paths.iter().any(|g| path_covers(g, p)))
        };
        if let Some(endpoint) = capability.get("endpoint").and_then(toml::Value::as_str) {
            assert!(
                config.endpoints.contains_key(endpoint),
                "the plugin asks for endpoint `{endpoint}`: not configured"
            );
            assert!(
                grants.iter().any(|g| g.endpoint.as_deref() == Some(endpoint) && covered(&g.methods, &g.paths)),
                "not granted: endpoint {endpoint} {methods:?} {paths:?}"
            );
        } else {
            let requested = capability["url"].as_str().expect("a capability names an endpoint or a url");
            assert!(
                grants
                    .iter()
                    .any(|g| g.url.as_deref().is_some_and(|u| origin_within(u, requested))
                        && covered(&g.methods, &g.paths)),
                "not granted: {requested} {methods:?} {paths:?}"
            );
        }
    }

    // The status-port grant covers every store's status address as PD reports it.
    for (store, address) in tikv_status_addresses(&compose()) {
        let (host, port) = host_port(address.as_str());
        assert!(
            grants.iter().any(|g| g.url.as_deref().is_some_and(|u| origin_matches(u, "http", &host, port))
                && g.methods.iter().any(|m| m.eq_ignore_ascii_case("GET"))
                && g.paths.iter().any(|p| path_covers(p, "/status"))),
            "no grant lets the plugin probe {store}'s status port http://{address}/status"
        );
    }
}

/// Dockerfile instructions, continuation lines joined and comments dropped.
fn dockerfile(path: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read(path).lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, arguments) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
        out.push((instruction.to_ascii_uppercase(), arguments.trim().to_owned()));
        current.clear();
    }
    out
}

fn exec_form(arguments: &str) -> Vec<String> {
    serde_json::from_str(arguments).unwrap_or_else(|e| panic!("`{arguments}` is not the exec (JSON) form: {e}"))
}

#[test]
fn the_image_builds_operator_host_and_runs_the_mounted_configuration() {
    let compose = compose();
    let services = services(&compose);
    let (name, operator) = operator_service(&services);

    // The build: context is the repository, the Dockerfile is docker/Dockerfile.
    let context = docker_dir().join(text(&operator["build"]["context"]));
    let context = context.canonicalize().unwrap();
    assert_eq!(context, repo().canonicalize().unwrap(), "{name}: the build context is the repository root");
    let dockerfile_path = context.join(text(&operator["build"]["dockerfile"]));
    assert_eq!(dockerfile_path, context.join("docker/Dockerfile"));
    let ignore = read(&docker_dir().join("Dockerfile.dockerignore"));
    assert!(ignore.lines().any(|l| l.trim() == "target"), "the build context leaves out target/");

    let instructions = dockerfile(&dockerfile_path);
    let stages: Vec<usize> =
        instructions.iter().enumerate().filter(|(_, (i, _))| i == "FROM").map(|(n, _)| n).collect();
    assert_eq!(stages.len(), 2, "a builder stage and a runtime stage");
    let (builder, runtime) = (&instructions[stages[0]..stages[1]], &instructions[stages[1]..]);

    let from = &builder[0].1;
    assert!(from.starts_with("rust:1.95"), "the builder is rust:1.95: {from}");
    let builder_name = from.split_whitespace().last().unwrap();
    assert!(from.to_ascii_lowercase().contains(" as "), "the builder stage is named");
    let runs: Vec<&str> = builder.iter().filter(|(i, _)| i == "RUN").map(|(_, a)| a.as_str()).collect();
    assert!(runs.iter().any(|r| r.contains("rustup target add wasm32-wasip2")), "the builder adds wasm32-wasip2");
    let build = runs.iter().find(|r| r.contains("cargo build")).expect("the builder runs cargo build");
    assert!(
        build.contains("--release") && build.contains("-p operator-host"),
        "cargo build --release -p operator-host: {build}"
    );

    assert!(
        runtime[0].1.starts_with("debian:") && runtime[0].1.contains("-slim"),
        "a slim Debian runtime: {}",
        runtime[0].1
    );
    let copy = runtime
        .iter()
        .find(|(i, a)| i == "COPY" && a.starts_with(&format!("--from={builder_name} ")))
        .expect("the runtime copies from the builder");
    let copied: Vec<&str> = copy.1.split_whitespace().skip(1).collect();
    let (source, destination) = (copied[0], copied[1]);
    assert!(
        source.ends_with("/operator-host") && build.contains(source),
        "the binary cargo built ({source}) is copied"
    );
    let user = runtime.iter().rev().find(|(i, _)| i == "USER").map(|(_, a)| a.as_str()).expect("a USER");
    assert!(!user.starts_with("root") && !user.starts_with('0'), "the operator runs unprivileged, not as `{user}`");

    let entrypoint = exec_form(&runtime.iter().find(|(i, _)| i == "ENTRYPOINT").expect("an ENTRYPOINT").1);
    assert!(
        entrypoint[0] == destination
            || Path::new(destination).parent().is_some_and(|dir| dir.join(&entrypoint[0]) == Path::new(destination)),
        "the entrypoint {entrypoint:?} is the copied binary {destination}"
    );
    let image_cmd = exec_form(&runtime.iter().find(|(i, _)| i == "CMD").expect("a CMD").1);
    let compose_cmd = command(operator);
    assert_eq!(compose_cmd, image_cmd, "compose runs what the image runs by default");
    assert_eq!(compose_cmd.last().map(String::as_str), Some("run"), "the daemon: `operator-host … run`");

    // The configuration path is the file the compose file mounts, and the data directory a volume.
    let (config_path, config_file) = operator_config_file(&compose);
    assert_eq!(config_file, docker_dir().join("operator/operator.toml"));
    assert_eq!(flag(&image_cmd, "config"), Some(config_path.as_str()));
    let data_dir = flag(&compose_cmd, "data-dir").expect("--data-dir");
    assert!(has_volume_at(name, operator, data_dir), "{name}: --data-dir {data_dir} is a named volume");
    let volumes: Vec<String> = runtime.iter().filter(|(i, _)| i == "VOLUME").flat_map(|(_, a)| exec_form(a)).collect();
    assert!(volumes.iter().any(|v| v == data_dir), "the image declares {data_dir} a volume: {volumes:?}");
    let env: String = runtime.iter().filter(|(i, _)| i == "ENV").map(|(_, a)| a.as_str()).collect::<Vec<_>>().join(" ");
    assert!(env.contains(&format!("OPERATOR_CONFIG={config_path}")), "one-off commands read the same configuration");
    assert!(env.contains(&format!("OPERATOR_DATA_DIR={data_dir}")), "one-off commands use the same data directory");
}

// ---------------------------------------------------------------------------------------------
// Grafana

/// Every series name the operator exports, from the metrics table of `host/src/api/metrics.rs`
/// (histograms as their `_bucket`, `_sum` and `_count` series), and the family names.
fn exported_series() -> (BTreeSet<String>, BTreeSet<String>) {
    let path = repo().join("host/src/api/metrics.rs");
    let source = read(&path);
    let families: Vec<(String, String)> = source
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .filter_map(|row| {
            let (name, rest) = row.split_once('`')?;
            let kind = rest.trim_start_matches([' ', '|']).split('|').next()?.trim();
            Some((name.to_owned(), kind.to_owned()))
        })
        .collect();
    assert!(!families.is_empty(), "{} has no metrics table", path.display());
    // The table documents what the code registers: each registered name has a row.
    for registered in registered_names(&source) {
        assert!(
            families.iter().any(|(name, _)| name.starts_with(&format!("operator_{registered}"))),
            "`{registered}` is registered in {} but not in its metrics table",
            path.display()
        );
    }
    let mut series = BTreeSet::new();
    for (name, kind) in &families {
        match kind.as_str() {
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    series.insert(format!("{name}{suffix}"));
                }
            }
            "counter" if !name.ends_with("_total") => {
                series.insert(format!("{name}_total"));
            }
            _ => {
                series.insert(name.clone());
            }
        }
    }
    (series, families.into_iter().map(|(name, _)| name).collect())
}

/// The names passed to `registry.register(...)` and `registry.register_with_unit(...)`.
fn registered_names(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for call in [".register(", ".register_with_unit("] {
        for (i, _) in source.match_indices(call) {
            let rest = source[i + call.len()..].trim_start();
            if let Some(literal) = rest.strip_prefix('"') {
                out.push(literal.split('"').next().unwrap().to_owned());
            }
        }
    }
    out
}

/// The metric names a PromQL expression selects: identifiers that are not functions, keywords,
/// aggregation operators, label names, strings, durations or Grafana variables.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "atan2",
        "inf",
        "nan",
    ];
    const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut label_list_next = false;
    let mut i = 0;
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if label_list_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                label_list_next = false;
            }
            '$' => {
                i += 1;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    label_list_next = true;
                } else if KEYWORDS.contains(&lower.as_str()) || next == Some(&'(') {
                    // an operator or a function
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_metric_names_skip_functions_labels_and_variables() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.95, sum by (le, plugin) (rate(a_seconds_bucket{x="y{z}", w=~"v"}[$__rate_interval]))) / on (plugin) group_left b_total offset 5m > 0"#,
    );
    assert_eq!(names, BTreeSet::from(["a_seconds_bucket".to_owned(), "b_total".to_owned()]));
}

fn panels(list: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for panel in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(panel.clone());
        out.extend(panels(&panel["panels"]));
    }
    out
}

#[test]
fn grafana_is_provisioned_with_prometheus_and_the_operator_dashboard() {
    let compose = compose();
    let listens = listening_ports(&compose);
    let services = services(&compose);
    let (name, grafana) =
        services.iter().find(|(_, s)| text(&s["image"]).starts_with("grafana/grafana:")).expect("a Grafana service");

    // The datasource: Prometheus, at a service that listens there.
    let provisioning = mounted_file(name, grafana, "/etc/grafana/provisioning");
    let datasources = yaml(&provisioning.join("datasources/prometheus.yaml"));
    let datasource = &datasources["datasources"][0];
    assert_eq!(datasource["type"], "prometheus");
    assert_reaches(&listens, "Grafana's datasource", &text(&datasource["url"]));
    let uid = text(&datasource["uid"]);

    // The dashboards: a file provider whose path is the mounted dashboards directory.
    let providers = yaml(&provisioning.join("dashboards/operator.yaml"));
    let path = text(&providers["providers"][0]["options"]["path"]);
    let dashboards_dir = mounted_file(name, grafana, &path);
    assert_eq!(dashboards_dir, docker_dir().join("grafana/dashboards"));
    if let Some(home) = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") {
        assert!(mounted_file(name, grafana, &text(home)).is_file(), "the home dashboard {home} exists");
    }

    let file = dashboards_dir.join("operator.json");
    let dashboard: Value =
        serde_json::from_str(&read(&file)).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", file.display()));
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let (series, families) = exported_series();
    let mut queried = BTreeSet::new();
    for panel in panels(&dashboard["panels"]) {
        let title = text(&panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], uid.as_str(), "panel `{title}` uses the provisioned datasource");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel `{title}` has no targets"));
        assert!(!targets.is_empty(), "panel `{title}` has no queries");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], uid.as_str(), "panel `{title}`: a query uses another datasource");
            let expr = text(&target["expr"]);
            let names = promql_metric_names(&expr);
            assert!(!names.is_empty(), "panel `{title}`: `{expr}` selects no metric");
            for metric in names {
                assert!(
                    series.contains(&metric),
                    "panel `{title}` queries `{metric}`, which the operator does not export"
                );
                queried.insert(metric);
            }
        }
    }
    for family in families {
        assert!(
            queried.iter().any(|m| m.starts_with(&family)),
            "no panel of {} shows `{family}`: add one",
            file.display()
        );
    }
}
