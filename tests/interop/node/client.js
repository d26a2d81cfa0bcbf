// A gRPC client in another language: Node's @grpc/grpc-js, with the service
// definitions loaded from tasktrail's descriptor set (gen/tasktrail.binpb) and
// its retry policy from the published service config (gen/grpc_service_config.json).
// Usage: node client.js <host:port> <descriptor set> <database id> <token> <service config>
// Prints one JSON document: a list page, one task and its log.
"use strict";
const fs = require("fs");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, descriptorPath, databaseId, token, serviceConfigPath] = process.argv.slice(2);
const definition = protoLoader.loadFileDescriptorSetFromBuffer(fs.readFileSync(descriptorPath), {
  keepCase: true,
  enums: String,
  longs: String,
  defaults: false,
});
const api = grpc.loadPackageDefinition(definition);
// grpc-js validates the config here and throws on one it cannot use.
const client = new api.tasktrail.v1.TaskService(target, grpc.credentials.createInsecure(), {
  "grpc.service_config": fs.readFileSync(serviceConfigPath, "utf8"),
});

const metadata = new grpc.Metadata();
metadata.add("authorization", `Bearer ${token}`);

function call(method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 10000);
    client[method](request, metadata, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

(async () => {
  const page = await call("ListTasks", { scope: "SCOPE_DATABASE", entity_id: databaseId, page_size: 3 });
  const first = page.tasks[page.tasks.length - 1];
  const task = await call("GetTask", { task_id: first.task_id });
  const log = await call("GetTaskLog", { task_id: first.task_id });
  let missing = null;
  try {
    await call("GetTask", { task_id: "00000000-0000-7000-8000-000000000000" });
  } catch (err) {
    missing = { code: err.code, details: err.details };
  }
  process.stdout.write(JSON.stringify({ page, task, log, missing }));
  client.close();
})().catch((err) => {
  process.stderr.write(String(err.stack || err) + "\n");
  process.exit(1);
});
