// kafkajs 2.2.4 consumer groups against skald (its default assigner,
// "RoundRobinAssigner"; JoinGroup v5 with KIP-394's MEMBER_ID_REQUIRED):
// two consumers share a topic, one leaves and the other takes over, and a
// consumer started after both closed resumes from the committed offsets.
// Prints a JSON summary on stdout for tests/integration/82-groups-kafkajs.t.
//
//   node group.js HOST:PORT
'use strict';

const { Kafka, logLevel, Partitioners } = require('kafkajs');

const broker = process.argv[2];
if (!broker) {
	console.error('usage: node group.js HOST:PORT');
	process.exit(2);
}

const kafka = new Kafka({
	clientId: 'skald-kafkajs-group',
	brokers: [broker],
	logLevel: logLevel.ERROR,
	connectionTimeout: 5000,
	requestTimeout: 15000,
	retry: { retries: 5, initialRetryTime: 100 },
});

const TOPIC = 'js-grp';
const GROUP = 'js-group';

function sleep(ms) {
	return new Promise((r) => setTimeout(r, ms));
}

async function until(pred, ms) {
	const end = Date.now() + ms;
	while (Date.now() < end) {
		if (pred())
			return true;
		await sleep(50);
	}
	return pred();
}

// A consumer recording what it got and its assignment per generation.
async function member(name) {
	const m = { name, got: [], assigned: [], protocol: null };
	m.c = kafka.consumer({ groupId: GROUP, heartbeatInterval: 500,
			       sessionTimeout: 10000, rebalanceTimeout: 10000,
			       maxWaitTimeInMs: 100 });
	m.c.on(m.c.events.GROUP_JOIN, (e) => {
		m.assigned = (e.payload.memberAssignment[TOPIC] || []).slice()
			.sort((a, b) => a - b);
		m.protocol = e.payload.groupProtocol;
	});
	await m.c.connect();
	await m.c.subscribe({ topic: TOPIC, fromBeginning: true });
	await m.c.run({
		eachMessage: async ({ message }) => {
			m.got.push(message.value.toString());
		},
	});
	return m;
}

function covers(ms, n) {
	const all = [].concat(...ms.map((m) => m.assigned)).sort((a, b) => a - b);
	return all.length === n && all.every((p, i) => p === i);
}

async function produce(producer, prefix, n) {
	const messages = [];
	for (let i = 0; i < n; i++)
		messages.push({ value: `${prefix}${i}`, partition: i % 4 });
	await producer.send({ topic: TOPIC, acks: -1, messages });
}

async function main() {
	const out = {};
	const admin = kafka.admin();
	await admin.connect();
	await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 4 }] });
	const producer = kafka.producer({
		createPartitioner: Partitioners.DefaultPartitioner });
	await producer.connect();

	const a = await member('a');
	const b = await member('b');
	out.split = await until(() => covers([a, b], 4) &&
				a.assigned.length && b.assigned.length, 30000);
	out.assignments = [a.assigned, b.assigned];
	out.protocol = a.protocol;
	await produce(producer, 'first-', 400);
	out.firstDone = await until(() => a.got.length + b.got.length >= 400,
				    30000);

	await b.c.disconnect();
	out.takeover = await until(() => covers([a], 4), 30000);
	await produce(producer, 'second-', 100);
	out.secondDone = await until(() => a.got.length + b.got.length >= 500,
				     30000);
	await sleep(500);
	await a.c.disconnect();
	out.consumed = a.got.concat(b.got);

	await produce(producer, 'third-', 50);
	const c = await member('c');
	out.thirdDone = await until(() => c.got.length >= 50, 30000);
	await sleep(500);
	await c.c.disconnect();
	out.late = c.got;

	const desc = await admin.describeGroups([GROUP]);
	out.state = desc.groups[0].state;
	const offs = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
	out.committed = offs[0].partitions.map((p) => Number(p.offset))
		.reduce((x, y) => x + y, 0);
	await producer.disconnect();
	await admin.disconnect();
	process.stdout.write(JSON.stringify(out) + '\n');
}

const timer = setTimeout(() => {
	console.error('group.js: timed out');
	process.exit(3);
}, 100000);
main().then(() => clearTimeout(timer)).catch((e) => {
	console.error('group.js failed:', e && e.stack || e);
	process.exit(1);
});
