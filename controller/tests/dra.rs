//! Dynamic Resource Allocation end to end on the real control plane: agents
//! publish their nodes' local devices, the controller publishes shared
//! devices in pools whose node selector names the nodes that see them, and
//! the real kube-scheduler allocates claims from those ResourceSlices and
//! binds pods; KWOK then runs them.
//!
//! The kubelet's half (the DRA plugin's registration and
//! NodePrepareResources) cannot run here — there is no kubelet and no
//! container runtime — so the last test plays the kubelet over the real
//! gRPC protocol, from the upstream proto definitions, against a real
//! agent, with claims the real scheduler allocated.

use ambit_agent::kubelet::proto::dra::dra_plugin_client::DraPluginClient;
use ambit_agent::kubelet::proto::dra::{Claim, NodePrepareResourcesRequest};
use ambit_agent::kubelet::proto::pluginregistration::InfoRequest;
use ambit_agent::kubelet::proto::pluginregistration::registration_client::RegistrationClient;
use ambit_crds::v1alpha1::{Device, DeviceSet};
use ambit_dra::DRIVER;
use ambit_tests::wait;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceClaim, ResourceSlice};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

mod support;

use support::{TIMEOUT, cluster, running_on, set};

/// Installs the DeviceClass of deploy/dra (once per control plane).
async fn device_class(client: &kube::Client) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/dra/deviceclass.yaml"
    ))?;
    let class: DeviceClass = serde_yaml_ng::from_str(&yaml)?;
    let api: Api<DeviceClass> = Api::all(client.clone());
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// A claim for one slot of `device` (by its Device name).
fn claim(name: &str, device: &str) -> anyhow::Result<ResourceClaim> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": { "name": name },
        "spec": { "devices": { "requests": [{
            "name": "dev",
            "exactly": {
                "deviceClassName": DRIVER,
                "selectors": [{ "cel": { "expression":
                    format!("device.attributes[\"{DRIVER}\"].device == \"{device}\"") } }],
            },
        }] } },
    }))?)
}

/// A pod that uses the claim `claim`, placed by the scheduler alone.
fn pod(name: &str, claim: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "containers": [{
                "name": "app", "image": "example/app:1",
                "resources": { "claims": [{ "name": "dev" }] },
            }],
            "resourceClaims": [{ "name": "dev", "resourceClaimName": claim }],
        },
    }))?)
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

fn unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

/// The slices of the shared pools that hold a DRA device of the Device
/// `device` (a pool holds the devices of one set that the same nodes see).
fn slices_of<'a>(slices: &'a [ResourceSlice], device: &str) -> Vec<&'a ResourceSlice> {
    slices
        .iter()
        .filter(|s| s.spec.pool.name.starts_with("shared/"))
        .filter(|s| {
            s.spec.devices.iter().flatten().any(|d| {
                d.attributes
                    .as_ref()
                    .and_then(|a| a.get("device"))
                    .and_then(|a| a.string.as_deref())
                    == Some(device)
            })
        })
        .collect()
}

/// The nodes the slices of a shared device select.
fn selected_nodes(slices: &[ResourceSlice], device: &str) -> Vec<String> {
    slices_of(slices, device)
        .into_iter()
        .filter_map(|s| s.spec.node_selector.clone())
        .flat_map(|n| n.node_selector_terms)
        .flat_map(|t| t.match_expressions.unwrap_or_default())
        .flat_map(|f| f.values.unwrap_or_default())
        .collect()
}

/// Plays a node's kubelet: finds the agent's DRA plugin through its
/// registration socket in `kubelet` (the node's kubelet directory).
async fn plugin_of(
    kubelet: &std::path::Path,
) -> anyhow::Result<DraPluginClient<tonic::transport::Channel>> {
    let registration =
        ambit_discovery::connect(&kubelet.join("plugins_registry/ambit.dev-reg.sock")).await?;
    let info = RegistrationClient::new(registration)
        .get_info(InfoRequest {})
        .await?
        .into_inner();
    assert_eq!(
        (info.r#type.as_str(), info.name.as_str()),
        ("DRAPlugin", DRIVER)
    );
    assert!(info.supported_versions.contains(&"v1.DRAPlugin".to_owned()));
    Ok(DraPluginClient::new(
        ambit_discovery::connect(info.endpoint.as_ref()).await?,
    ))
}

/// The request that prepares the claim `name`.
async fn prepare_request(
    claims: &Api<ResourceClaim>,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(NodePrepareResourcesRequest, String)> {
    let uid = claims.get(name).await?.uid().unwrap_or_default();
    let request = NodePrepareResourcesRequest {
        claims: vec![Claim {
            namespace: namespace.to_owned(),
            uid: uid.clone(),
            name: name.to_owned(),
        }],
    };
    Ok((request, uid))
}

async fn the_device(devices: &Api<Device>) -> anyhow::Result<Device> {
    Ok(
        wait::list_until(devices, TIMEOUT, "the Device", |ds| ds.len() == 1)
            .await?
            .remove(0),
    )
}

#[tokio::test]
async fn a_network_device_is_only_allocated_on_the_nodes_that_see_it() -> anyhow::Result<()> {
    let c = cluster("dra-shared", &[&[], &[], &[]]).await?;
    device_class(&c.env.client).await?;
    // A slice of a pool of one Device, as earlier builds wrote them: the
    // controller deletes it (the set's pools replace it).
    let slices: Api<ResourceSlice> = Api::all(c.env.client.clone());
    let legacy: ResourceSlice = serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {
            "name": format!("ambit-shared-legacy-{}", c.env.namespace),
            "labels": {
                "ambit.dev/device-uid": "a-device-long-gone",
                "ambit.dev/namespace": c.env.namespace,
                "app.kubernetes.io/managed-by": "ambit-controller",
            },
        },
        "spec": {
            "driver": DRIVER, "allNodes": true, "devices": [],
            "pool": { "name": format!("shared/{}/old", c.env.namespace), "generation": 1, "resourceSliceCount": 1 },
        },
    }))?;
    slices.create(&PostParams::default(), &legacy).await?;
    // Node 2 never sees the PLC; nodes 0 and 1 do.
    c.agents[2].set_offline(&["plc"])?;
    let sets: Api<DeviceSet> = c.env.api();
    let details = json!({ "shared": true, "devices": [{ "id": "plc", "properties": { "FIRMWARE": "2.4.1" } }] });
    sets.create(
        &PostParams::default(),
        &set("plcs", 3, details, json!(null))?,
    )
    .await?;
    let devices: Api<Device> = c.env.api();
    let device = the_device(&devices).await?.name_any();
    let mut seeing = vec![c.agents[0].node.clone(), c.agents[1].node.clone()];
    seeing.sort();

    let published = wait::list_until(&slices, TIMEOUT, "a slice selecting nodes 0 and 1", |ss| {
        let mut nodes = selected_nodes(ss, &device);
        nodes.sort();
        nodes == seeing
    })
    .await?;
    let mine = slices_of(&published, &device);
    let slots: usize = mine
        .iter()
        .map(|s| s.spec.devices.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(slots, 3, "one DRA device per slot of capacity 3");
    let attributes = mine[0]
        .spec
        .devices
        .as_ref()
        .and_then(|d| d.first())
        .and_then(|d| d.attributes.clone())
        .unwrap_or_default();
    assert_eq!(
        attributes.get("FIRMWARE").and_then(|a| a.version.clone()),
        Some("2.4.1".into()),
        "a semantic version property is a version attribute"
    );

    // Three claims: the scheduler allocates all three slots, each pod on a
    // node that sees the device.
    let claims: Api<ResourceClaim> = c.env.api();
    let pods: Api<Pod> = c.env.api();
    for i in 0..4 {
        claims
            .create(&PostParams::default(), &claim(&format!("c{i}"), &device)?)
            .await?;
    }
    for i in 0..3 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("p{i}"), &format!("c{i}"))?,
        )
        .await?;
    }
    let running = wait::list_until(&pods, TIMEOUT, "three pods running", |ps| {
        running_on(ps).len() == 3
    })
    .await?;
    for p in &running {
        let node = node_of(p).unwrap_or_default();
        assert!(
            seeing.contains(&node),
            "{} runs on {node}, which does not see the device",
            p.name_any()
        );
    }
    // The kubelet of p0's node prepares its claim: the node's plugin finds
    // the device in the set's pool, whatever that pool is called; node 2,
    // which does not see it, refuses.
    let p0 = running
        .iter()
        .find(|p| p.name_any() == "p0")
        .and_then(node_of)
        .ok_or_else(|| anyhow::anyhow!("p0 is not placed"))?;
    let agent = c
        .agents
        .iter()
        .find(|a| a.node == p0)
        .ok_or_else(|| anyhow::anyhow!("no agent on {p0}"))?;
    let (request, uid) = prepare_request(&claims, &c.env.namespace, "c0").await?;
    let answer = plugin_of(&agent.kubelet_dir)
        .await?
        .node_prepare_resources(request.clone())
        .await?
        .into_inner();
    assert_eq!(answer.claims[&uid].error, "", "prepared on {p0}");
    assert_eq!(answer.claims[&uid].devices.len(), 1);
    let answer = plugin_of(&c.agents[2].kubelet_dir)
        .await?
        .node_prepare_resources(request)
        .await?
        .into_inner();
    assert!(
        answer.claims[&uid].error.contains("not one node"),
        "node 2 refuses: {}",
        answer.claims[&uid].error
    );

    // A fourth claim finds no free slot: capacity holds.
    pods.create(&PostParams::default(), &pod("p3", "c3")?)
        .await?;
    wait::until(
        &pods,
        "p3",
        TIMEOUT,
        "p3 unschedulable",
        |p: Option<&Pod>| p.is_some_and(unschedulable),
    )
    .await?;

    // Node 1 stops seeing it: after the grace period the slice selects node
    // 0 only, and the freed slot goes to a pod on node 0.
    c.agents[1].set_offline(&["plc"])?;
    let only = vec![c.agents[0].node.clone()];
    wait::list_until(&slices, TIMEOUT, "the slice to select node 0 only", |ss| {
        selected_nodes(ss, &device) == only
    })
    .await?;
    pods.delete("p0", &DeleteParams::default().grace_period(0))
        .await?;
    wait::deleted(&pods, "p0", TIMEOUT).await?;
    claims.delete("c0", &DeleteParams::default()).await?;
    let p3 = wait::until(&pods, "p3", TIMEOUT, "p3 running", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.clone()).as_deref() == Some("Running")
    })
    .await?;
    assert_eq!(node_of(&p3), Some(c.agents[0].node.clone()));

    // The set goes, its Device with it: its slices are swept (they are
    // cluster-scoped, so no owner reference can take them).
    sets.delete("plcs", &DeleteParams::default()).await?;
    wait::deleted(&devices, &device, TIMEOUT).await?;
    wait::list_until(&slices, TIMEOUT, "the gone Device's slices deleted", |ss| {
        selected_nodes(ss, &device).is_empty()
            && slices_of(ss, &device).is_empty()
            && !ss.iter().any(|s| s.name_any() == legacy.name_any())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn dra_brokers_claim_exactly_their_device() -> anyhow::Result<()> {
    let c = cluster("dra-brokers", &[&[], &[]]).await?;
    device_class(&c.env.client).await?;
    let sets: Api<DeviceSet> = c.env.api();
    let broker = json!({
        "access": "DRA",
        "pod": { "containers": [{ "name": "broker", "image": "example/broker:1" }] },
    });
    let details = json!({ "shared": true, "devices": ["cam-a", "cam-b"] });
    sets.create(&PostParams::default(), &set("cams", 2, details, broker)?)
        .await?;
    let pods: Api<Pod> = c.env.api();
    let running = wait::list_until(&pods, TIMEOUT, "four running brokers", |ps| {
        running_on(ps).len() == 4
    })
    .await?;
    let claims: Api<ResourceClaim> = c.env.api();
    let all = claims.list(&ListParams::default()).await?.items;
    for pod in &running {
        let device = pod
            .labels()
            .get("ambit.dev/device")
            .cloned()
            .unwrap_or_default();
        let claim = all
            .iter()
            .find(|c| {
                c.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == pod.metadata.uid.as_ref())
            })
            .ok_or_else(|| anyhow::anyhow!("no claim for broker {}", pod.name_any()))?;
        let results = claim
            .status
            .as_ref()
            .and_then(|s| s.allocation.as_ref())
            .and_then(|a| a.devices.as_ref())
            .and_then(|d| d.results.clone())
            .unwrap_or_default();
        assert_eq!(
            results.len(),
            1,
            "claim {} allocated one device",
            claim.name_any()
        );
        let slots: Vec<String> = (0..2)
            .map(|slot| ambit_dra::slot_device_name(&c.env.namespace, &device, slot))
            .collect();
        assert!(
            ambit_dra::is_shared_pool(&results[0].pool) && slots.contains(&results[0].device),
            "broker of {device} got a slot of it, not {} of pool {}",
            results[0].device,
            results[0].pool
        );
    }
    Ok(())
}

#[tokio::test]
async fn local_devices_are_claimed_on_their_node_and_prepared_by_the_plugin() -> anyhow::Result<()>
{
    let c = cluster("dra-local", &[&[], &[]]).await?;
    device_class(&c.env.client).await?;
    let sets: Api<DeviceSet> = c.env.api();
    let details = json!({ "devices": ["usb-cam"] });
    sets.create(
        &PostParams::default(),
        &set("usb", 1, details, json!(null))?,
    )
    .await?;
    let devices: Api<Device> = c.env.api();
    let local =
        wait::list_until(&devices, TIMEOUT, "two local Devices", |ds| ds.len() == 2).await?;
    let node0 = c.agents[0].node.clone();
    let on_node0 = local
        .iter()
        .find(|d| d.spec.node.as_ref() == Some(&node0))
        .map(ResourceExt::name_any)
        .ok_or_else(|| anyhow::anyhow!("no Device of node 0"))?;

    let claims: Api<ResourceClaim> = c.env.api();
    let pods: Api<Pod> = c.env.api();
    claims
        .create(&PostParams::default(), &claim("cam", &on_node0)?)
        .await?;
    pods.create(&PostParams::default(), &pod("app", "cam")?)
        .await?;
    let running = wait::until(&pods, "app", TIMEOUT, "app running", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.clone()).as_deref() == Some("Running")
    })
    .await?;
    assert_eq!(
        node_of(&running),
        Some(node0.clone()),
        "a local device's pod runs on its node"
    );

    // Play node 0's kubelet: find the plugin through its registration
    // socket, then prepare the claim the scheduler allocated.
    let mut plugin = plugin_of(&c.agents[0].kubelet_dir).await?;
    let (request, uid) = prepare_request(&claims, &c.env.namespace, "cam").await?;
    let answer = plugin
        .node_prepare_resources(request.clone())
        .await?
        .into_inner();
    let prepared = &answer.claims[&uid];
    assert_eq!(prepared.error, "");
    assert_eq!(prepared.devices.len(), 1);
    assert_eq!(
        prepared.devices[0].cdi_device_ids,
        vec![format!("{DRIVER}/device={on_node0}")],
        "the CDI name of the spec the agent wrote for the device"
    );

    // Node 1's kubelet cannot prepare a device of node 0.
    let mut plugin = plugin_of(&c.agents[1].kubelet_dir).await?;
    let answer = plugin.node_prepare_resources(request).await?.into_inner();
    let refused = &answer.claims[&uid];
    assert!(
        refused.error.contains("not one node"),
        "node 1 refuses: {}",
        refused.error
    );
    Ok(())
}
