#!/usr/bin/env node
'use strict'
/*
 * kafkajs driver for tests/test_kafkajs.py: one kafkajs operation per run.
 *
 *   node tests/js/kafkajs_client.js COMMAND --bootstrap 127.0.0.1:PORT [--timeout-ms N] < request.json
 *
 * The request (a JSON object, `{}` when there is nothing to say) comes on
 * stdin, the answer is one JSON object on stdout:
 *   {"ok": true, "result": ...}            the operation succeeded
 *   {"ok": false, "error": {...}, ...}     kafkajs threw: its error's name, type
 *                                          (Kafka's error name), code, retriable,
 *                                          message, and the errors it wraps
 * Keys, values and header values travel as base64 (null stays null), so any
 * bytes round-trip. kafkajs' own log goes to stderr.
 *
 * Every wait is bounded: the whole run by --timeout-ms (default 60 s; past it
 * the driver prints {"ok": false, "error": {"name": "DriverTimeout"}} and
 * exits 3), each consume loop by its own timeoutMs, every kafkajs request by
 * requestTimeout, and every retry loop by a small retry count.
 *
 * Commands (request fields in parentheses):
 *   create-topics       (topics: [{topic, numPartitions, configs: {name: value}}]) -> true, or false
 *                       when kafkajs got TOPIC_ALREADY_EXISTS for every topic
 *   list-topics         -> [name]
 *   metadata            (topics) -> {topics: [{name, partitions: [{partitionId, leader, ...}]}]}
 *   create-partitions   (topicPartitions: [{topic, count}])
 *   delete-topics       (topics)
 *   describe-configs    (topic, configNames?) -> {name: value} of that topic's configs
 *   alter-configs       (topic, entries: {name: value}) -> kafkajs' answer (AlterConfigs)
 *   describe-cluster    -> {brokers, controller, clusterId}
 *   topic-offsets       (topic, timestamps: [ms]) -> {offsets: fetchTopicOffsets,
 *                       byTimestamp: [{timestamp, partitions: fetchTopicOffsetsByTimestamp}]}
 *   group-offsets       (groupId, topics) -> admin.fetchOffsets
 *   produce             (topic, messages: [{key, value, headers, partition, timestamp}],
 *                       compression: none|gzip|snappy|lz4|zstd, acks, idempotent,
 *                       maxInFlightRequests, chunk, retries)
 *                       -> {delivered: [[partition, offset]] in message order}
 *   consume             (topic, groupId, expected, fromBeginning, autoCommit, lingerMs, timeoutMs)
 *                       -> {records: [{partition, offset, key, value, headers, timestamp}]}
 *   group               (topic, groupId, members, partitions, messages, timeoutMs): starts
 *                       `members` consumers of one group, waits until their assignments
 *                       split all `partitions`, then produces `messages` and consumes them
 *                       -> {members: [{memberId, assignment, rebalances}], records: [{member, ...}]}
 */

const { Kafka, logLevel, CompressionTypes, CompressionCodecs, Partitioners, ConfigResourceTypes } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('@2l/kafkajs-lz4')
const zstd = require('@mongodb-js/zstd')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
// @kafkajs/zstd does not build with Node 20 (its native cppzst is C++14 against
// C++17 headers); this is the same codec over prebuilt zstd bindings.
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress(encoder) {
    return zstd.compress(encoder.buffer, 3)
  },
  async decompress(buffer) {
    return zstd.decompress(buffer)
  },
})

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function parseArgs(argv) {
  const [command, ...rest] = argv
  const options = { command, bootstrap: null, timeoutMs: 60000 }
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i], rest[i + 1]]
    if (flag === '--bootstrap') options.bootstrap = value
    else if (flag === '--timeout-ms') options.timeoutMs = Number(value)
    else throw new Error(`unknown argument ${flag}`)
  }
  if (!command || !options.bootstrap) {
    throw new Error('usage: kafkajs_client.js COMMAND --bootstrap HOST:PORT [--timeout-ms N] < request.json')
  }
  if (!/^127\.0\.0\.1:\d+$/.test(options.bootstrap)) {
    throw new Error(`only loopback brokers: ${options.bootstrap}`)
  }
  return options
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = []
    process.stdin.on('data', chunk => chunks.push(chunk))
    process.stdin.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim()
      try {
        resolve(text ? JSON.parse(text) : {})
      } catch (error) {
        reject(error)
      }
    })
    process.stdin.on('error', reject)
  })
}

// kafkajs' default logger writes to stdout, which carries our answer.
const stderrLogCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

function makeKafka(bootstrap, clientId = 'pinion-kafkajs-tests') {
  return new Kafka({
    clientId,
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: process.env.KAFKAJS_LOG_LEVEL ? logLevel[process.env.KAFKAJS_LOG_LEVEL] : logLevel.WARN,
    logCreator: stderrLogCreator,
  })
}

const b64 = buffer => (buffer == null ? null : Buffer.from(buffer).toString('base64'))
const unb64 = text => (text == null ? null : Buffer.from(text, 'base64'))

function describeError(error, depth = 0) {
  if (error == null || depth > 4) return null
  const described = {
    name: error.name,
    type: error.type === undefined ? null : error.type,
    code: error.code === undefined ? null : error.code,
    retriable: error.retriable === undefined ? null : error.retriable,
    message: String(error.message),
  }
  if (error.topic !== undefined) described.topic = error.topic
  if (error.originalError) described.originalError = describeError(error.originalError, depth + 1)
  if (error.cause && error.cause !== error.originalError) described.cause = describeError(error.cause, depth + 1)
  if (Array.isArray(error.errors)) described.errors = error.errors.map(e => describeError(e, depth + 1))
  return described
}

/** Headers as [[key, base64 or null]] in record order (repeated keys come as arrays). */
function headerPairs(headers) {
  const pairs = []
  for (const [key, value] of Object.entries(headers || {})) {
    for (const one of Array.isArray(value) ? value : [value]) pairs.push([key, b64(one)])
  }
  return pairs
}

/** [[key, base64 or null]] -> kafkajs' {key: Buffer | [Buffer]}. */
function headerObject(pairs) {
  if (!pairs) return undefined
  const headers = {}
  for (const [key, value] of pairs) {
    const buffer = unb64(value)
    if (!(key in headers)) headers[key] = buffer
    else if (Array.isArray(headers[key])) headers[key].push(buffer)
    else headers[key] = [headers[key], buffer]
  }
  return headers
}

function recordOf(message, partition) {
  return {
    partition,
    offset: Number(message.offset),
    key: b64(message.key),
    value: b64(message.value),
    headers: headerPairs(message.headers),
    timestamp: Number(message.timestamp),
  }
}

async function withAdmin(kafka, action) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    return await action(admin)
  } finally {
    await admin.disconnect()
  }
}

// --- admin ---------------------------------------------------------------

const adminCommands = {
  'create-topics': (admin, request) =>
    admin.createTopics({
      topics: request.topics.map(t => ({
        topic: t.topic,
        numPartitions: t.numPartitions,
        replicationFactor: 1,
        configEntries: Object.entries(t.configs || {}).map(([name, value]) => ({ name, value })),
      })),
      timeout: 10000,
    }),
  'list-topics': admin => admin.listTopics(),
  metadata: (admin, request) => admin.fetchTopicMetadata({ topics: request.topics }),
  'create-partitions': (admin, request) => admin.createPartitions({ topicPartitions: request.topicPartitions, timeout: 10000 }),
  'delete-topics': (admin, request) => admin.deleteTopics({ topics: request.topics, timeout: 10000 }),
  'describe-configs': async (admin, request) => {
    const { resources } = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: request.topic, configNames: request.configNames }],
      includeSynonyms: false,
    })
    const [resource] = resources
    if (resource.errorCode !== 0) {
      throw Object.assign(new Error(`describeConfigs: ${resource.errorMessage}`), { code: resource.errorCode })
    }
    return Object.fromEntries(resource.configEntries.map(e => [e.configName, e.configValue]))
  },
  'alter-configs': (admin, request) =>
    admin.alterConfigs({
      resources: [
        {
          type: ConfigResourceTypes.TOPIC,
          name: request.topic,
          configEntries: Object.entries(request.entries).map(([name, value]) => ({ name, value })),
        },
      ],
    }),
  'describe-cluster': admin => admin.describeCluster(),
  'topic-offsets': async (admin, request) => {
    const offsets = await admin.fetchTopicOffsets(request.topic)
    const byTimestamp = []
    for (const timestamp of request.timestamps || []) {
      byTimestamp.push({ timestamp, partitions: await admin.fetchTopicOffsetsByTimestamp(request.topic, timestamp) })
    }
    return { offsets, byTimestamp }
  },
  'group-offsets': (admin, request) => admin.fetchOffsets({ groupId: request.groupId, topics: request.topics }),
}

// --- produce -------------------------------------------------------------

/**
 * kafkajs acknowledges a send with one base offset per partition; the
 * partitioner is wrapped to learn which partition each message went to, so
 * each message's offset is its partition's base offset plus its place among
 * that send's messages for the partition (kafkajs keeps their order).
 */
async function produce(kafka, request) {
  const partitionOf = new WeakMap()
  const createPartitioner = () => {
    const inner = Partitioners.DefaultPartitioner()
    return args => {
      const partition = inner(args)
      partitionOf.set(args.message, partition)
      return partition
    }
  }
  const producer = kafka.producer({
    createPartitioner,
    idempotent: !!request.idempotent,
    maxInFlightRequests: request.maxInFlightRequests || null,
    allowAutoTopicCreation: true,
    retry: { retries: request.retries === undefined ? 3 : request.retries, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  await producer.connect()
  const delivered = []
  const responses = []
  try {
    const chunk = request.chunk || 500
    const acks = request.acks === undefined ? -1 : request.acks
    for (let start = 0; start < request.messages.length; start += chunk) {
      const messages = request.messages.slice(start, start + chunk).map(m => {
        const message = { key: unb64(m.key), value: unb64(m.value) }
        if (m.headers) message.headers = headerObject(m.headers)
        if (m.partition != null) message.partition = m.partition
        if (m.timestamp != null) message.timestamp = String(m.timestamp)
        return message
      })
      let metadata
      try {
        metadata = await producer.send({
          topic: request.topic,
          messages,
          acks,
          timeout: 10000,
          compression: COMPRESSION[request.compression || 'none'],
        })
      } catch (error) {
        error.delivered = delivered
        throw error
      }
      responses.push(metadata.map(m => ({ partition: m.partition, errorCode: m.errorCode, baseOffset: m.baseOffset })))
      const base = new Map(metadata.map(m => [m.partition, BigInt(m.baseOffset)]))
      const next = new Map()
      for (const message of messages) {
        const partition = partitionOf.get(message)
        const index = next.get(partition) || 0n
        next.set(partition, index + 1n)
        if (!base.has(partition)) throw new Error(`no acknowledgement for partition ${partition}: ${JSON.stringify(metadata)}`)
        delivered.push([partition, Number(base.get(partition) + index)])
      }
    }
    return { delivered, responses }
  } finally {
    await producer.disconnect()
  }
}

// --- consume -------------------------------------------------------------

function groupConsumer(kafka, request) {
  return kafka.consumer({
    groupId: request.groupId,
    sessionTimeout: request.sessionTimeoutMs || 10000,
    heartbeatInterval: 500,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 500,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
  })
}

/** Resolves when `condition()` holds, checked every 20 ms; false after `ms`. */
async function waitFor(condition, ms) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (condition()) return true
    await sleep(20)
  }
  return condition()
}

/**
 * One consumer of `groupId` reads `expected` records (or until timeoutMs),
 * then lingerMs more to catch extras, and disconnects, which commits what it
 * read when autoCommit is on (kafkajs' default).
 */
async function consume(kafka, request) {
  const consumer = groupConsumer(kafka, request)
  const records = []
  const crashes = []
  consumer.on(consumer.events.CRASH, event => crashes.push(describeError(event.payload.error)))
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [request.topic], fromBeginning: request.fromBeginning !== false })
    await consumer.run({
      autoCommit: request.autoCommit !== false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) records.push(recordOf(message, batch.partition))
      },
    })
    const finished = await waitFor(() => records.length >= request.expected || crashes.length > 0, request.timeoutMs || 30000)
    await sleep(request.lingerMs === undefined ? 500 : request.lingerMs)
    return { records, finished, crashes }
  } finally {
    await consumer.disconnect()
  }
}

/**
 * `members` consumers join one group; once each holds a share of the
 * partitions (together all of them, none twice) and they heartbeat in the
 * same generation, `messages` are produced and the members consume them.
 */
async function group(kafka, request) {
  const count = request.members || 2
  const members = []
  for (let i = 0; i < count; i++) {
    const consumer = groupConsumer(makeKafka(request.bootstrap, `pinion-kafkajs-member-${i}`), request)
    const member = { index: i, consumer, memberId: null, assignment: null, generation: null, joins: 0, rebalances: 0, records: [], crashes: [] }
    consumer.on(consumer.events.GROUP_JOIN, event => {
      member.memberId = event.payload.memberId
      member.assignment = (event.payload.memberAssignment[request.topic] || []).slice().sort((a, b) => a - b)
      member.joins += 1
      member.generation = null
    })
    consumer.on(consumer.events.HEARTBEAT, event => {
      member.generation = event.payload.groupGenerationId
    })
    consumer.on(consumer.events.REBALANCING, () => {
      member.rebalances += 1
    })
    consumer.on(consumer.events.CRASH, event => member.crashes.push(describeError(event.payload.error)))
    members.push(member)
  }
  const timeoutMs = request.timeoutMs || 40000
  const started = Date.now()
  try {
    for (const member of members) {
      await member.consumer.connect()
      await member.consumer.subscribe({ topics: [request.topic], fromBeginning: true })
      await member.consumer.run({
        eachBatch: async ({ batch }) => {
          for (const message of batch.messages) member.records.push(recordOf(message, batch.partition))
        },
      })
    }
    const split = () => {
      if (members.some(m => m.assignment === null || m.generation === null || m.assignment.length === 0)) return false
      if (new Set(members.map(m => m.generation)).size !== 1) return false
      const all = members.flatMap(m => m.assignment).sort((a, b) => a - b)
      return JSON.stringify(all) === JSON.stringify([...Array(request.partitions).keys()])
    }
    const stable = await waitFor(split, timeoutMs)
    const joinedMs = Date.now() - started
    const rebalancesBefore = members.map(m => m.rebalances)
    let produced = null
    if (stable) {
      produced = await produce(kafka, { topic: request.topic, messages: request.messages, acks: -1 })
      await waitFor(
        () => members.reduce((n, m) => n + m.records.length, 0) >= request.messages.length || members.some(m => m.crashes.length),
        Math.max(1000, timeoutMs - (Date.now() - started))
      )
      await sleep(500)
    }
    return {
      stable,
      joinedMs,
      delivered: produced && produced.delivered,
      members: members.map((m, i) => ({
        memberId: m.memberId,
        assignment: m.assignment,
        generation: m.generation,
        joins: m.joins,
        rebalancesAfterSplit: m.rebalances - rebalancesBefore[i],
        crashes: m.crashes,
      })),
      records: members.flatMap(m => m.records.map(r => ({ member: m.index, ...r }))),
    }
  } finally {
    await Promise.all(members.map(m => m.consumer.disconnect()))
  }
}

// --- main ----------------------------------------------------------------

function reply(answer, code) {
  process.stdout.write(JSON.stringify(answer) + '\n', () => process.exit(code))
}

async function main() {
  let options
  try {
    options = parseArgs(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`${error.message}\n`)
    process.exit(2)
  }
  setTimeout(() => {
    reply({ ok: false, error: { name: 'DriverTimeout', message: `${options.command} took more than ${options.timeoutMs} ms` } }, 3)
  }, options.timeoutMs)
  const request = await readStdin()
  request.bootstrap = options.bootstrap
  const kafka = makeKafka(options.bootstrap)
  try {
    let result
    if (options.command in adminCommands) {
      result = await withAdmin(kafka, admin => adminCommands[options.command](admin, request))
    } else if (options.command === 'produce') {
      result = await produce(kafka, request)
    } else if (options.command === 'consume') {
      result = await consume(kafka, request)
    } else if (options.command === 'group') {
      result = await group(kafka, request)
    } else {
      process.stderr.write(`unknown command ${options.command}\n`)
      process.exit(2)
    }
    reply({ ok: true, result: result === undefined ? null : result }, 0)
  } catch (error) {
    reply({ ok: false, error: describeError(error), delivered: error.delivered || null }, 0)
  }
}

main().catch(error => {
  process.stderr.write(`${error.stack}\n`)
  process.exit(1)
})
