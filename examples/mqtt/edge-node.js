// A simulated Sparkplug B edge node, on Eclipse Tahu's Node.js client, for
// Ambit's demo and the mqtt handler's tests (npm sparkplug-client, pinned and
// installed into ~/.cache/ambit/npm by tests/src/peers/mqtt.rs, which
// `make setup` runs). By hand, against a broker on 127.0.0.1:1883:
//
//   NODE_PATH=~/.cache/ambit/npm/sparkplug-client-3.2.4/node_modules \
//   SERVER_URL=mqtt://127.0.0.1:1883 USERNAME=ambit PASSWORD=secret \
//   CLIENT_ID=line-1 GROUP=plant NODE=line-1 DEVICES=pump-1,valve-1 \
//     node examples/mqtt/edge-node.js
//
// env: SERVER_URL, USERNAME, PASSWORD, CLIENT_ID, GROUP, NODE,
//      DEVICES (comma-separated), BDSEQ, CA_FILE (for mqtts://)
// stdin, one command a line:
//   rebirth              publish NBIRTH and the DBIRTHs again
//   dbirth <device>      add a device (if new) and publish its DBIRTH
//   ddeath <device>      publish that device's DDEATH
//   stop                 publish NDEATH (current bdSeq) and disconnect
//   publish <topic> <hex payload, - for none> [retain]   a raw message
// stdout: "born" after each set of births.
"use strict";
const fs = require("fs");
const readline = require("readline");
const sparkplug = require("sparkplug-client");

const env = process.env;
const mqttOptions = { reconnectPeriod: 300 };
if (env.CA_FILE) {
  mqttOptions.ca = fs.readFileSync(env.CA_FILE);
}
const client = sparkplug.newClient({
  serverUrl: env.SERVER_URL,
  username: env.USERNAME,
  password: env.PASSWORD,
  clientId: env.CLIENT_ID,
  groupId: env.GROUP,
  edgeNode: env.NODE,
  version: "spBv1.0",
  publishDeath: true,
  keepalive: 5,
  mqttOptions,
});
client.bdSeq = Number(env.BDSEQ || "0");
const devices = (env.DEVICES || "").split(",").filter((d) => d.length > 0);

function deviceBirth(device, now) {
  client.publishDeviceBirth(device, {
    timestamp: now,
    metrics: [
      {
        name: "Temperature",
        type: "double",
        value: 21.5,
        properties: { engUnit: { type: "string", value: "degC" } },
      },
      { name: "Running", type: "boolean", value: true },
    ],
  });
}

function births() {
  const now = Date.now();
  client.publishNodeBirth({
    timestamp: now,
    metrics: [{ name: "Node Control/Rebirth", type: "boolean", value: false }],
  });
  for (const device of devices) {
    deviceBirth(device, now);
  }
  console.log("born");
}

client.on("birth", births);
client.on("error", (error) => console.error("edge node error: " + error));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, ...args] = line.trim().split(/\s+/);
  if (command === "rebirth") {
    births();
  } else if (command === "dbirth") {
    if (!devices.includes(args[0])) {
      devices.push(args[0]);
    }
    deviceBirth(args[0], Date.now());
    console.log("dbirth " + args[0]);
  } else if (command === "ddeath") {
    client.publishDeviceDeath(args[0], { timestamp: Date.now(), metrics: [] });
    console.log("ddeath " + args[0]);
  } else if (command === "stop") {
    client.stop();
    console.log("stopped");
  } else if (command === "publish") {
    const raw = client.client;
    raw.publish(args[0], Buffer.from(args[1] === "-" ? "" : args[1] || "", "hex"), { retain: args[2] === "retain" }, () =>
      console.log("published " + args[0]),
    );
  }
});
