// kafkajs 2.2.4 against skald: admin createTopics / fetchTopicMetadata /
// fetchTopicOffsets / deleteTopics, and a producer (acks -1, 1, 0, gzip).
// kafkajs has no assign() consumer, so the records it sent are printed as
// JSON on stdout and tests/integration/40-kafkajs.t reads them back with
// another client.
//
//   node produce.js HOST:PORT
'use strict';

const { Kafka, logLevel, CompressionTypes, Partitioners } = require('kafkajs');

const broker = process.argv[2];
if (!broker) {
	console.error('usage: node produce.js HOST:PORT');
	process.exit(2);
}

const kafka = new Kafka({
	clientId: 'skald-kafkajs-test',
	brokers: [broker],
	logLevel: logLevel.ERROR,
	connectionTimeout: 5000,
	requestTimeout: 15000,
	retry: { retries: 3, initialRetryTime: 100 },
});

const b64 = (x) => Buffer.from(x).toString('base64');

// Deterministic pseudo-random bytes (no Math.random: reruns are equal).
let seed = 42;
function bytes(n) {
	const out = Buffer.alloc(n);
	for (let i = 0; i < n; i++) {
		seed = (seed * 1103515245 + 12345) & 0x7fffffff;
		out[i] = seed >> 16 & 0xff;
	}
	return out;
}

async function main() {
	const out = { sent: [] };
	const admin = kafka.admin();
	await admin.connect();

	out.created = await admin.createTopics({
		topics: [{ topic: 'js-topic', numPartitions: 2 },
			 { topic: 'js-admin', numPartitions: 3 }],
		waitForLeaders: true,
	});
	// kafkajs answers false (not an error) for an existing topic.
	out.createdAgain = await admin.createTopics({
		topics: [{ topic: 'js-admin', numPartitions: 3 }],
	});
	const md = await admin.fetchTopicMetadata({ topics: ['js-admin'] });
	out.metadata = md.topics.map((t) => ({
		name: t.name,
		partitions: t.partitions.map((p) => ({
			partitionId: p.partitionId, leader: p.leader,
			errorCode: p.partitionErrorCode,
		})).sort((a, b) => a.partitionId - b.partitionId),
	}));
	const cluster = await admin.describeCluster();
	out.cluster = {
		brokers: cluster.brokers.map((x) => `${x.host}:${x.port}`),
		controller: cluster.controller,
		nodeIds: cluster.brokers.map((x) => x.nodeId),
	};

	const producer = kafka.producer({
		createPartitioner: Partitioners.DefaultPartitioner,
		allowAutoTopicCreation: true,
	});
	await producer.connect();

	// 300 records to 2 partitions: keys, binary values, headers.
	const msgs = [];
	for (let i = 0; i < 300; i++) {
		const m = {
			key: `js-${i}`,
			value: i % 50 === 0 ? Buffer.alloc(0) : bytes(1 + (i * 37) % 3000),
			headers: { seq: String(i), bin: bytes(8) },
			partition: i % 2,
			timestamp: String(1700000000000 + i),
		};
		msgs.push(m);
	}
	for (let i = 0; i < msgs.length; i += 100) {
		const part = msgs.slice(i, i + 100);
		const res = await producer.send({ topic: 'js-topic', acks: -1,
						  messages: part });
		out.sent.push(...res.map((r) => ({ topic: r.topicName,
			partition: r.partition, errorCode: r.errorCode,
			baseOffset: r.baseOffset })));
	}
	out.records = msgs.map((m) => ({
		key: m.key, value: b64(m.value), partition: m.partition,
		timestamp: m.timestamp,
		headers: Object.entries(m.headers).map(([k, v]) => [k, b64(v)]),
	}));

	// gzip (kafkajs's only built-in codec), acks=1; then acks=0.
	const gz = [];
	for (let i = 0; i < 50; i++)
		gz.push({ key: null, value: `gzip record ${i} `.repeat(20) });
	await producer.send({ topic: 'js-gzip', acks: 1,
			      compression: CompressionTypes.GZIP, messages: gz });
	out.gzip = gz.map((m) => m.value);
	const a0 = [];
	for (let i = 0; i < 20; i++)
		a0.push({ value: `acks0-${i}`, partition: 0 });
	await producer.send({ topic: 'js-acks0', acks: 0, messages: a0 });
	out.acks0 = a0.map((m) => m.value);

	// sendBatch across two topics in one request.
	await producer.sendBatch({ acks: -1, topicMessages: [
		{ topic: 'js-batch-a', messages: [{ value: 'a1' }, { value: 'a2' }] },
		{ topic: 'js-batch-b', messages: [{ value: 'b1' }] },
	] });
	await producer.disconnect();

	out.offsets = (await admin.fetchTopicOffsets('js-topic'))
		.map((o) => ({ partition: o.partition, low: o.low, high: o.high }))
		.sort((a, b) => a.partition - b.partition);
	out.batchOffsets = {
		a: (await admin.fetchTopicOffsets('js-batch-a'))[0].high,
		b: (await admin.fetchTopicOffsets('js-batch-b'))[0].high,
	};

	await admin.deleteTopics({ topics: ['js-admin'], timeout: 10000 });
	out.afterDelete = (await admin.listTopics()).includes('js-admin');
	await admin.disconnect();
	process.stdout.write(JSON.stringify(out) + '\n');
}

const timer = setTimeout(() => {
	console.error('produce.js: timed out');
	process.exit(3);
}, 60000);
main().then(() => clearTimeout(timer)).catch((e) => {
	console.error('produce.js failed:', e && e.stack || e);
	process.exit(1);
});
