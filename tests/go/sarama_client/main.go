// Command sarama_client drives a Kafka broker with sarama, a pure-Go Kafka
// client, for the black-box tests in tests/test_sarama.py. Each run does one
// thing and prints what happened as JSON on stdout: one object, except
// `group`, which prints one object per line as events happen. sarama's own
// log goes to stderr. Every wait is bounded by -timeout; a watchdog exits
// with status 3 if a sarama call overruns it.
//
//	sarama_client <command> -bootstrap 127.0.0.1:PORT [flags]
//
// Commands:
//
//	create-topic      -topic T -partitions N [-config k=v ...]
//	describe-topics   -topic T                     ClusterAdmin.DescribeTopics
//	topics                                         Client.Topics (Metadata)
//	list-topics                                    ClusterAdmin.ListTopics
//	create-partitions -topic T -partitions N       ClusterAdmin.CreatePartitions
//	delete-topic      -topic T                     ClusterAdmin.DeleteTopic
//	describe-config   -topic T [-request-version V]
//	alter-config      -topic T -config k=v ...     ClusterAdmin.AlterConfig
//	describe-cluster                               ClusterAdmin.DescribeCluster
//	produce           -topic T [-codec C] [-acks A] [-partitioner hash|manual]
//	                  messages on stdin: a JSON array of {key, value,
//	                  partition, timestamp_ms, headers: [{key, value}]},
//	                  keys and values base64 (null for none)
//	consume           -topic T -partitions N -expect M [-linger D]
//	offsets           -topic T -partitions N [-times ms,ms,...]
//	group             -group G -topic T [-stop-after N] [-stop-on-stdin-eof]
//	group-offsets     -group G -topic T -partitions N   ClusterAdmin.ListConsumerGroupOffsets
//	describe-groups   -group G                     ClusterAdmin.DescribeConsumerGroups
//	list-groups                                    ClusterAdmin.ListConsumerGroups
//
// Errors are {code, name, message}: the Kafka error code and name when the
// broker sent one, else code null and sarama's message.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

// defaultKafkaVersion is the Kafka version sarama assumes the broker runs;
// sarama picks every request version from it, not from ApiVersions. pinion
// stores only RecordBatch v2 and serves Produce from v3, Fetch from v4 and
// ListOffsets from v1, so it must be at least 0.11.0: below that, sarama
// 1.22 sends Produce v2 and Fetch v3 (and message sets v0/v1). sarama 1.22
// gates nothing above 1.0.0 (Metadata v5, CreateTopics v2), so 2.1.0, the
// release that brought zstd, behaves like its maximum, 2.2.0. (It still
// sends zstd in Produce v3: sarama 1.22 has no Produce v7.)
const defaultKafkaVersion = "2.1.0"

type options struct {
	bootstrap        string
	timeout          time.Duration
	kafkaVersion     string
	topic            string
	partitions       int
	configs          listFlag
	requestVersion   int
	codec            string
	acks             int
	partitioner      string
	maxRetries       int
	expect           int
	linger           time.Duration
	times            string
	group            string
	stopAfter        int
	stopOnStdinEOF   bool
	offsetsRetention time.Duration
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: sarama_client <command> -bootstrap HOST:PORT [flags]; see the source")
		os.Exit(2)
	}
	command := os.Args[1]
	o := options{}
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	flags.StringVar(&o.bootstrap, "bootstrap", "", "broker address, HOST:PORT")
	flags.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound on the whole command")
	flags.StringVar(&o.kafkaVersion, "kafka-version", defaultKafkaVersion, "sarama's config.Version")
	flags.StringVar(&o.topic, "topic", "", "topic")
	flags.IntVar(&o.partitions, "partitions", 1, "partition count")
	flags.Var(&o.configs, "config", "topic config k=v (repeatable)")
	flags.IntVar(&o.requestVersion, "request-version", -1, "describe-config: send DescribeConfigs at this version on the controller connection instead of through ClusterAdmin")
	flags.StringVar(&o.codec, "codec", "none", "none, gzip, snappy, lz4 or zstd")
	flags.IntVar(&o.acks, "acks", 1, "required acks: 0, 1 or -1")
	flags.StringVar(&o.partitioner, "partitioner", "hash", "hash (sarama's default, by key) or manual (each message's partition)")
	flags.IntVar(&o.maxRetries, "retries", 3, "producer retries")
	flags.IntVar(&o.expect, "expect", 0, "consume: records to wait for")
	flags.DurationVar(&o.linger, "linger", 300*time.Millisecond, "how long to keep reading after the expected count, to see extras")
	flags.StringVar(&o.times, "times", "", "offsets: timestamps in ms to look up, comma-separated")
	flags.StringVar(&o.group, "group", "", "consumer group id")
	flags.IntVar(&o.stopAfter, "stop-after", 0, "group: stop after this many records (0: never)")
	flags.BoolVar(&o.stopOnStdinEOF, "stop-on-stdin-eof", false, "group: stop when stdin closes")
	// sarama 1.22 commits with OffsetCommit v1 when this is 0 (its default)
	// and v2, with the retention, otherwise; pinion, like Kafka 4, serves
	// OffsetCommit from v2 only.
	flags.DurationVar(&o.offsetsRetention, "offsets-retention", 24*time.Hour, "group: Consumer.Offsets.Retention")
	if err := flags.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if o.bootstrap == "" {
		fmt.Fprintln(os.Stderr, "sarama_client: -bootstrap is required")
		os.Exit(2)
	}
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Ltime|log.Lmicroseconds)

	out := newJSONLines(os.Stdout)
	// sarama's own timeouts should end every command before this fires.
	time.AfterFunc(o.timeout+15*time.Second, func() {
		out.write(map[string]interface{}{"error": &errorJSON{Message: fmt.Sprintf("watchdog: %s did not finish within %s", command, o.timeout+15*time.Second)}})
		os.Exit(3)
	})

	config, err := newConfig(&o)
	if err != nil {
		out.write(map[string]interface{}{"error": describeError(err)})
		os.Exit(2)
	}
	if command == "group" {
		runGroup(&o, config, out)
		return
	}
	commands := map[string]func(*options, *sarama.Config) (map[string]interface{}, error){
		"create-topic":      createTopic,
		"describe-topics":   describeTopics,
		"topics":            listTopicNames,
		"list-topics":       adminListTopics,
		"create-partitions": createPartitions,
		"delete-topic":      deleteTopic,
		"describe-config":   describeConfig,
		"alter-config":      alterConfig,
		"describe-cluster":  describeCluster,
		"produce":           produce,
		"consume":           consume,
		"offsets":           offsets,
		"group-offsets":     groupOffsets,
		"describe-groups":   describeGroups,
		"list-groups":       listGroups,
	}
	run, ok := commands[command]
	if !ok {
		fmt.Fprintf(os.Stderr, "sarama_client: unknown command %q\n", command)
		os.Exit(2)
	}
	result, err := run(&o, config)
	if result == nil {
		result = map[string]interface{}{}
	}
	result["error"] = describeError(err)
	out.write(result)
}

func newConfig(o *options) (*sarama.Config, error) {
	version, err := sarama.ParseKafkaVersion(o.kafkaVersion)
	if err != nil {
		return nil, err
	}
	config := sarama.NewConfig()
	config.ClientID = "pinion-sarama-tests"
	config.Version = version
	config.Net.DialTimeout = 5 * time.Second
	config.Net.ReadTimeout = 15 * time.Second
	config.Net.WriteTimeout = 10 * time.Second
	config.Metadata.Retry.Max = 5
	config.Metadata.Retry.Backoff = 200 * time.Millisecond
	config.Admin.Timeout = 10 * time.Second

	codecs := map[string]sarama.CompressionCodec{
		"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
		"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
	}
	codec, ok := codecs[o.codec]
	if !ok {
		return nil, fmt.Errorf("unknown codec %q", o.codec)
	}
	config.Producer.Compression = codec
	config.Producer.RequiredAcks = sarama.RequiredAcks(o.acks)
	config.Producer.Timeout = 10 * time.Second
	config.Producer.Return.Successes = true
	config.Producer.Return.Errors = true
	config.Producer.Retry.Max = o.maxRetries
	config.Producer.Retry.Backoff = 100 * time.Millisecond
	config.Producer.Flush.Frequency = 5 * time.Millisecond
	config.Producer.Flush.Bytes = 256 << 10
	switch o.partitioner {
	case "hash":
		config.Producer.Partitioner = sarama.NewHashPartitioner
	case "manual":
		config.Producer.Partitioner = sarama.NewManualPartitioner
	default:
		return nil, fmt.Errorf("unknown partitioner %q", o.partitioner)
	}
	// One request in flight per connection: a retried batch cannot overtake
	// the next one, so each key's messages stay in produce order.
	config.Net.MaxOpenRequests = 1

	config.Consumer.Return.Errors = true
	config.Consumer.MaxWaitTime = 250 * time.Millisecond
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	config.Consumer.Offsets.Retention = o.offsetsRetention
	config.Consumer.Group.Session.Timeout = 10 * time.Second
	config.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	config.Consumer.Group.Rebalance.Timeout = 15 * time.Second
	config.Consumer.Group.Rebalance.Retry.Backoff = 500 * time.Millisecond
	return config, config.Validate()
}

func addrs(o *options) []string { return []string{o.bootstrap} }

// withAdmin runs f with a ClusterAdmin and closes it.
func withAdmin(o *options, config *sarama.Config, f func(sarama.ClusterAdmin) (map[string]interface{}, error)) (map[string]interface{}, error) {
	admin, err := sarama.NewClusterAdmin(addrs(o), config)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	return f(admin)
}

func topicConfigs(o *options) (map[string]*string, error) {
	entries := map[string]*string{}
	for _, pair := range o.configs {
		parts := strings.SplitN(pair, "=", 2)
		if len(parts) != 2 {
			return nil, fmt.Errorf("-config %q is not k=v", pair)
		}
		value := parts[1]
		entries[parts[0]] = &value
	}
	return entries, nil
}

func createTopic(o *options, config *sarama.Config) (map[string]interface{}, error) {
	entries, err := topicConfigs(o)
	if err != nil {
		return nil, err
	}
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		detail := &sarama.TopicDetail{NumPartitions: int32(o.partitions), ReplicationFactor: 1, ConfigEntries: entries}
		return nil, admin.CreateTopic(o.topic, detail, false)
	})
}

func describeTopics(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		metadata, err := admin.DescribeTopics([]string{o.topic})
		if err != nil {
			return nil, err
		}
		topics := []map[string]interface{}{}
		for _, topic := range metadata {
			partitions := []map[string]interface{}{}
			for _, p := range topic.Partitions {
				partitions = append(partitions, map[string]interface{}{
					"partition": p.ID, "leader": p.Leader, "replicas": p.Replicas, "isr": p.Isr, "error": describeError(kafkaError(p.Err)),
				})
			}
			sort.Slice(partitions, func(i, j int) bool { return partitions[i]["partition"].(int32) < partitions[j]["partition"].(int32) })
			topics = append(topics, map[string]interface{}{"name": topic.Name, "error": describeError(kafkaError(topic.Err)), "partitions": partitions})
		}
		return map[string]interface{}{"topics": topics}, nil
	})
}

// listTopicNames asks a plain client for the cluster's topics (Metadata).
func listTopicNames(o *options, config *sarama.Config) (map[string]interface{}, error) {
	client, err := sarama.NewClient(addrs(o), config)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	names, err := client.Topics()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return map[string]interface{}{"topics": names}, nil
}

// adminListTopics is ClusterAdmin.ListTopics: Metadata, then DescribeConfigs
// for every topic (at v0: sarama 1.22 sets no version there).
func adminListTopics(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		details, err := admin.ListTopics()
		if err != nil {
			return nil, err
		}
		topics := map[string]interface{}{}
		for name, detail := range details {
			configs := map[string]string{}
			for key, value := range detail.ConfigEntries {
				if value != nil {
					configs[key] = *value
				}
			}
			topics[name] = map[string]interface{}{"partitions": detail.NumPartitions, "replication_factor": detail.ReplicationFactor, "configs": configs}
		}
		return map[string]interface{}{"topics": topics}, nil
	})
}

func createPartitions(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		return nil, admin.CreatePartitions(o.topic, int32(o.partitions), nil, false)
	})
}

func deleteTopic(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		return nil, admin.DeleteTopic(o.topic)
	})
}

// describeConfig describes the topic's configs through
// ClusterAdmin.DescribeConfig (DescribeConfigs v0 in sarama 1.22) or, with
// -request-version, sends sarama's DescribeConfigsRequest at that version to
// the controller.
func describeConfig(o *options, config *sarama.Config) (map[string]interface{}, error) {
	resource := sarama.ConfigResource{Type: sarama.TopicResource, Name: o.topic}
	var entries []*sarama.ConfigEntry
	if o.requestVersion < 0 {
		_, err := withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
			found, err := admin.DescribeConfig(resource)
			for i := range found {
				entries = append(entries, &found[i])
			}
			return nil, err
		})
		if err != nil {
			return nil, err
		}
	} else {
		client, err := sarama.NewClient(addrs(o), config)
		if err != nil {
			return nil, err
		}
		defer client.Close()
		controller, err := client.Controller()
		if err != nil {
			return nil, err
		}
		request := &sarama.DescribeConfigsRequest{Version: int16(o.requestVersion), Resources: []*sarama.ConfigResource{&resource}}
		response, err := controller.DescribeConfigs(request)
		if err != nil {
			return nil, err
		}
		if len(response.Resources) != 1 {
			return nil, fmt.Errorf("DescribeConfigs answered %d resources for 1", len(response.Resources))
		}
		if code := response.Resources[0].ErrorCode; code != 0 {
			return nil, sarama.KError(code)
		}
		entries = response.Resources[0].Configs
	}
	configs := map[string]interface{}{}
	for _, entry := range entries {
		configs[entry.Name] = map[string]interface{}{
			"value": entry.Value, "default": entry.Default, "read_only": entry.ReadOnly, "source": entry.Source,
		}
	}
	return map[string]interface{}{"configs": configs}, nil
}

func alterConfig(o *options, config *sarama.Config) (map[string]interface{}, error) {
	entries, err := topicConfigs(o)
	if err != nil {
		return nil, err
	}
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		return nil, admin.AlterConfig(sarama.TopicResource, o.topic, entries, false)
	})
}

// describeCluster lists the brokers (ClusterAdmin.DescribeCluster, which
// sends Metadata v0: it has no controller id, sarama says -1) and the
// controller sarama's client finds (Metadata v5).
func describeCluster(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		brokers, _, err := admin.DescribeCluster()
		if err != nil {
			return nil, err
		}
		listed := []map[string]interface{}{}
		for _, broker := range brokers {
			listed = append(listed, map[string]interface{}{"id": broker.ID(), "addr": broker.Addr()})
		}
		client, err := sarama.NewClient(addrs(o), config)
		if err != nil {
			return nil, err
		}
		defer client.Close()
		controller, err := client.Controller()
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"brokers": listed, "controller": controller.ID()}, nil
	})
}

type headerJSON struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

type inputMessage struct {
	Key         []byte       `json:"key"`
	Value       []byte       `json:"value"`
	Partition   *int32       `json:"partition"`
	TimestampMs *int64       `json:"timestamp_ms"`
	Headers     []headerJSON `json:"headers"`
}

type delivery struct {
	Index       int   `json:"index"`
	Partition   int32 `json:"partition"`
	Offset      int64 `json:"offset"`
	TimestampMs int64 `json:"timestamp_ms"`
}

type failure struct {
	Index int        `json:"index"`
	Error *errorJSON `json:"error"`
}

func toProducerMessage(topic string, index int, m inputMessage) *sarama.ProducerMessage {
	message := &sarama.ProducerMessage{Topic: topic, Metadata: index}
	if m.Key != nil {
		message.Key = sarama.ByteEncoder(m.Key)
	}
	if m.Value != nil {
		message.Value = sarama.ByteEncoder(m.Value)
	}
	if m.Partition != nil {
		message.Partition = *m.Partition
	}
	if m.TimestampMs != nil {
		message.Timestamp = time.Unix(0, *m.TimestampMs*int64(time.Millisecond))
	}
	for _, h := range m.Headers {
		message.Headers = append(message.Headers, sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return message
}

// produce sends the messages on stdin with an AsyncProducer and reports,
// for each, where it was stored or why not.
func produce(o *options, config *sarama.Config) (map[string]interface{}, error) {
	var input []inputMessage
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&input); err != nil {
		return nil, fmt.Errorf("reading messages from stdin: %v", err)
	}
	producer, err := sarama.NewAsyncProducer(addrs(o), config)
	if err != nil {
		return nil, err
	}
	deadline := time.After(o.timeout)
	stopFeeding := make(chan struct{})
	go func() {
		for i, m := range input {
			select {
			case producer.Input() <- toProducerMessage(o.topic, i, m):
			case <-stopFeeding:
				return
			}
		}
	}()
	delivered := []delivery{}
	failed := []failure{}
	timedOut := false
	for len(delivered)+len(failed) < len(input) && !timedOut {
		select {
		case message := <-producer.Successes():
			delivered = append(delivered, delivery{
				Index: message.Metadata.(int), Partition: message.Partition, Offset: message.Offset,
				TimestampMs: millis(message.Timestamp),
			})
		case produceErr := <-producer.Errors():
			failed = append(failed, failure{Index: produceErr.Msg.Metadata.(int), Error: describeError(produceErr.Err)})
		case <-deadline:
			timedOut = true
		}
	}
	close(stopFeeding)
	closed := make(chan error, 1)
	go func() { closed <- producer.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		timedOut = true
	}
	result := map[string]interface{}{"delivered": delivered, "failed": failed, "timed_out": timedOut}
	if timedOut {
		return result, fmt.Errorf("%d of %d messages unanswered after %s", len(input)-len(delivered)-len(failed), len(input), o.timeout)
	}
	return result, nil
}

type recordJSON struct {
	Generation  *int32       `json:"generation,omitempty"`
	Partition   int32        `json:"partition"`
	Offset      int64        `json:"offset"`
	Key         []byte       `json:"key"`
	Value       []byte       `json:"value"`
	Headers     []headerJSON `json:"headers"`
	TimestampMs int64        `json:"timestamp_ms"`
}

func toRecord(message *sarama.ConsumerMessage) recordJSON {
	record := recordJSON{
		Partition: message.Partition, Offset: message.Offset, Key: message.Key, Value: message.Value,
		Headers: []headerJSON{}, TimestampMs: millis(message.Timestamp),
	}
	for _, h := range message.Headers {
		record.Headers = append(record.Headers, headerJSON{Key: h.Key, Value: h.Value})
	}
	return record
}

// consume reads every partition from its oldest offset with one partition
// consumer each, until -expect records came (then -linger more) or -timeout.
func consume(o *options, config *sarama.Config) (map[string]interface{}, error) {
	consumer, err := sarama.NewConsumer(addrs(o), config)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	messages := make(chan *sarama.ConsumerMessage, 4096)
	errs := make(chan *sarama.ConsumerError, 64)
	var forwarders sync.WaitGroup
	var partitionConsumers []sarama.PartitionConsumer
	for p := 0; p < o.partitions; p++ {
		pc, err := consumer.ConsumePartition(o.topic, int32(p), sarama.OffsetOldest)
		if err != nil {
			for _, started := range partitionConsumers {
				started.AsyncClose()
			}
			return nil, err
		}
		partitionConsumers = append(partitionConsumers, pc)
		forwarders.Add(2)
		go func() {
			defer forwarders.Done()
			for message := range pc.Messages() {
				messages <- message
			}
		}()
		go func() {
			defer forwarders.Done()
			for consumerErr := range pc.Errors() {
				select {
				case errs <- consumerErr:
				default: // keep the first few
				}
			}
		}()
	}
	records := []recordJSON{}
	deadline := time.After(o.timeout)
	var lingerEnd <-chan time.Time // set once the expected count came
	for done := false; !done; {
		if lingerEnd == nil && len(records) >= o.expect {
			lingerEnd = time.After(o.linger)
		}
		select {
		case message := <-messages:
			records = append(records, toRecord(message))
		case <-lingerEnd:
			done = true
		case <-deadline:
			done = true
		}
	}
	for _, pc := range partitionConsumers {
		pc.AsyncClose()
	}
	go func() { // let the forwarders finish
		for range messages {
		}
	}()
	waitBounded(&forwarders, 10*time.Second)
	consumerErrors := []*errorJSON{}
	for len(errs) > 0 {
		consumerErrors = append(consumerErrors, describeError(<-errs))
	}
	result := map[string]interface{}{"records": records, "consumer_errors": consumerErrors}
	if len(records) < o.expect {
		return result, fmt.Errorf("consumed %d of %d records within %s", len(records), o.expect, o.timeout)
	}
	return result, nil
}

// millis is t in ms since the epoch, -1 for no timestamp.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.UnixNano() / int64(time.Millisecond)
}

func waitBounded(group *sync.WaitGroup, limit time.Duration) bool {
	done := make(chan struct{})
	go func() { group.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

// offsets asks for each partition's oldest and newest offsets and, for each
// of -times, the first offset whose timestamp is at or after it.
func offsets(o *options, config *sarama.Config) (map[string]interface{}, error) {
	var stamps []int64
	for _, field := range strings.Split(o.times, ",") {
		if field == "" {
			continue
		}
		stamp, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return nil, err
		}
		stamps = append(stamps, stamp)
	}
	client, err := sarama.NewClient(addrs(o), config)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	partitions := []map[string]interface{}{}
	for p := int32(0); p < int32(o.partitions); p++ {
		oldest, err := client.GetOffset(o.topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, err
		}
		newest, err := client.GetOffset(o.topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, err
		}
		byTime := [][2]int64{}
		for _, stamp := range stamps {
			offset, err := client.GetOffset(o.topic, p, stamp)
			if err != nil {
				return nil, err
			}
			byTime = append(byTime, [2]int64{stamp, offset})
		}
		partitions = append(partitions, map[string]interface{}{"partition": p, "oldest": oldest, "newest": newest, "by_time": byTime})
	}
	return map[string]interface{}{"partitions": partitions}, nil
}

// groupHandler logs a consumer group member's sessions and records.
type groupHandler struct {
	out      *jsonLines
	topic    string
	mu       sync.Mutex
	consumed int
	reached  chan struct{} // closed once consumed >= stopAfter
	target   int
}

func (h *groupHandler) Setup(session sarama.ConsumerGroupSession) error {
	partitions := session.Claims()[h.topic]
	if partitions == nil {
		partitions = []int32{}
	}
	h.out.write(map[string]interface{}{"event": "assigned", "member": session.MemberID(), "generation": session.GenerationID(), "partitions": partitions})
	return nil
}

func (h *groupHandler) Cleanup(session sarama.ConsumerGroupSession) error {
	h.out.write(map[string]interface{}{"event": "revoked", "member": session.MemberID(), "generation": session.GenerationID()})
	return nil
}

func (h *groupHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	generation := session.GenerationID()
	for message := range claim.Messages() {
		record := toRecord(message)
		record.Generation = &generation
		h.out.write(map[string]interface{}{"event": "record", "record": record})
		session.MarkMessage(message, "")
		h.mu.Lock()
		h.consumed++
		if h.target > 0 && h.consumed == h.target {
			close(h.reached)
		}
		h.mu.Unlock()
	}
	return nil
}

// runGroup is one consumer group member: it joins, reads and marks every
// record it is assigned, and leaves (committing what it marked) after
// -stop-after records (and -linger), when stdin closes with
// -stop-on-stdin-eof, or at -timeout. It prints JSON lines: assigned,
// revoked, record, error, and last closed.
func runGroup(o *options, config *sarama.Config, out *jsonLines) {
	group, err := sarama.NewConsumerGroup(addrs(o), o.group, config)
	if err != nil {
		out.write(map[string]interface{}{"event": "closed", "error": describeError(err)})
		return
	}
	handler := &groupHandler{out: out, topic: o.topic, reached: make(chan struct{}), target: o.stopAfter}
	var errorCount int
	var errorMu sync.Mutex
	reportError := func(err error) {
		errorMu.Lock()
		defer errorMu.Unlock()
		if errorCount++; errorCount <= 20 {
			out.write(map[string]interface{}{"event": "error", "error": describeError(err)})
		}
	}
	go func() {
		for err := range group.Errors() {
			reportError(err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	consuming := make(chan struct{})
	go func() {
		defer close(consuming)
		for ctx.Err() == nil {
			if err := group.Consume(ctx, []string{o.topic}, handler); err != nil {
				reportError(err)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	stdinClosed := make(chan struct{})
	if o.stopOnStdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
	}
	reason := "timeout"
	select {
	case <-handler.reached:
		time.Sleep(o.linger)
		reason = "stop-after"
	case <-stdinClosed:
		reason = "stdin closed"
	case <-time.After(o.timeout):
	}
	cancel()
	select {
	case <-consuming:
	case <-time.After(15 * time.Second):
		reason += ", then the session did not end within 15 s"
	}
	closed := make(chan error, 1)
	go func() { closed <- group.Close() }()
	var closeErr error
	select {
	case closeErr = <-closed:
	case <-time.After(15 * time.Second):
		closeErr = errors.New("ConsumerGroup.Close did not return within 15 s")
	}
	handler.mu.Lock()
	consumed := handler.consumed
	handler.mu.Unlock()
	out.write(map[string]interface{}{"event": "closed", "reason": reason, "consumed": consumed, "error": describeError(closeErr)})
}

func groupOffsets(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		partitions := []int32{}
		for p := int32(0); p < int32(o.partitions); p++ {
			partitions = append(partitions, p)
		}
		response, err := admin.ListConsumerGroupOffsets(o.group, map[string][]int32{o.topic: partitions})
		if err != nil {
			return nil, err
		}
		if response.Err != sarama.ErrNoError {
			return nil, response.Err
		}
		committed := map[string]interface{}{}
		for p, block := range response.Blocks[o.topic] {
			if block.Err != sarama.ErrNoError {
				return nil, block.Err
			}
			committed[strconv.Itoa(int(p))] = block.Offset
		}
		return map[string]interface{}{"offsets": committed}, nil
	})
}

func describeGroups(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		descriptions, err := admin.DescribeConsumerGroups([]string{o.group})
		if err != nil {
			return nil, err
		}
		groups := []map[string]interface{}{}
		for _, description := range descriptions {
			members := []map[string]interface{}{}
			for id, member := range description.Members {
				assignment, err := member.GetMemberAssignment()
				if err != nil {
					return nil, err
				}
				members = append(members, map[string]interface{}{"member": id, "client_id": member.ClientId, "assignment": assignment.Topics})
			}
			groups = append(groups, map[string]interface{}{
				"group": description.GroupId, "error": describeError(kafkaError(description.Err)), "state": description.State,
				"protocol_type": description.ProtocolType, "protocol": description.Protocol, "members": members,
			})
		}
		return map[string]interface{}{"groups": groups}, nil
	})
}

func listGroups(o *options, config *sarama.Config) (map[string]interface{}, error) {
	return withAdmin(o, config, func(admin sarama.ClusterAdmin) (map[string]interface{}, error) {
		groups, err := admin.ListConsumerGroups()
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"groups": groups}, nil
	})
}

// jsonLines writes one JSON document per line, whole lines only.
type jsonLines struct {
	mu      sync.Mutex
	writer  *bufio.Writer
	encoder *json.Encoder
}

func newJSONLines(w io.Writer) *jsonLines {
	writer := bufio.NewWriterSize(w, 1<<16)
	return &jsonLines{writer: writer, encoder: json.NewEncoder(writer)}
}

func (j *jsonLines) write(document interface{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.encoder.Encode(document); err != nil {
		fmt.Fprintf(os.Stderr, "sarama_client: cannot encode %T: %v\n", document, err)
	}
	_ = j.writer.Flush()
}

type errorJSON struct {
	Code    *int16 `json:"code"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// kafkaError is nil for ErrNoError, so that describeError gives null.
func kafkaError(code sarama.KError) error {
	if code == sarama.ErrNoError {
		return nil
	}
	return code
}

// kafkaErrorCode finds the Kafka error code inside sarama's error types.
func kafkaErrorCode(err error) (sarama.KError, bool) {
	switch e := err.(type) {
	case sarama.KError:
		return e, true
	case *sarama.TopicError:
		return e.Err, true
	case *sarama.TopicPartitionError:
		return e.Err, true
	case *sarama.ProducerError:
		return kafkaErrorCode(e.Err)
	case *sarama.ConsumerError:
		return kafkaErrorCode(e.Err)
	}
	return 0, false
}

func describeError(err error) *errorJSON {
	if err == nil {
		return nil
	}
	described := &errorJSON{Message: err.Error()}
	if code, ok := kafkaErrorCode(err); ok {
		number := int16(code)
		described.Code = &number
		described.Name = kafkaErrorName(number)
	}
	return described
}

// kafkaErrorNames are Kafka's names of the error codes sarama 1.22 knows.
var kafkaErrorNames = []string{
	"NONE", "OFFSET_OUT_OF_RANGE", "CORRUPT_MESSAGE", "UNKNOWN_TOPIC_OR_PARTITION", "INVALID_FETCH_SIZE",
	"LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "REQUEST_TIMED_OUT", "BROKER_NOT_AVAILABLE",
	"REPLICA_NOT_AVAILABLE", "MESSAGE_TOO_LARGE", "STALE_CONTROLLER_EPOCH", "OFFSET_METADATA_TOO_LARGE",
	"NETWORK_EXCEPTION", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR",
	"INVALID_TOPIC_EXCEPTION", "RECORD_LIST_TOO_LARGE", "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
	"INVALID_REQUIRED_ACKS", "ILLEGAL_GENERATION", "INCONSISTENT_GROUP_PROTOCOL", "INVALID_GROUP_ID",
	"UNKNOWN_MEMBER_ID", "INVALID_SESSION_TIMEOUT", "REBALANCE_IN_PROGRESS", "INVALID_COMMIT_OFFSET_SIZE",
	"TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED",
	"INVALID_TIMESTAMP", "UNSUPPORTED_SASL_MECHANISM", "ILLEGAL_SASL_STATE", "UNSUPPORTED_VERSION",
	"TOPIC_ALREADY_EXISTS", "INVALID_PARTITIONS", "INVALID_REPLICATION_FACTOR", "INVALID_REPLICA_ASSIGNMENT",
	"INVALID_CONFIG", "NOT_CONTROLLER", "INVALID_REQUEST", "UNSUPPORTED_FOR_MESSAGE_FORMAT", "POLICY_VIOLATION",
	"OUT_OF_ORDER_SEQUENCE_NUMBER", "DUPLICATE_SEQUENCE_NUMBER", "INVALID_PRODUCER_EPOCH", "INVALID_TXN_STATE",
	"INVALID_PRODUCER_ID_MAPPING", "INVALID_TRANSACTION_TIMEOUT", "CONCURRENT_TRANSACTIONS",
	"TRANSACTION_COORDINATOR_FENCED", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "SECURITY_DISABLED",
	"OPERATION_NOT_ATTEMPTED", "KAFKA_STORAGE_ERROR", "LOG_DIR_NOT_FOUND", "SASL_AUTHENTICATION_FAILED",
	"UNKNOWN_PRODUCER_ID", "REASSIGNMENT_IN_PROGRESS", "DELEGATION_TOKEN_AUTH_DISABLED",
	"DELEGATION_TOKEN_NOT_FOUND", "DELEGATION_TOKEN_OWNER_MISMATCH", "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
	"DELEGATION_TOKEN_AUTHORIZATION_FAILED", "DELEGATION_TOKEN_EXPIRED", "INVALID_PRINCIPAL_TYPE",
	"NON_EMPTY_GROUP", "GROUP_ID_NOT_FOUND", "FETCH_SESSION_ID_NOT_FOUND", "INVALID_FETCH_SESSION_EPOCH",
	"LISTENER_NOT_FOUND", "TOPIC_DELETION_DISABLED", "FENCED_LEADER_EPOCH", "UNKNOWN_LEADER_EPOCH",
	"UNSUPPORTED_COMPRESSION_TYPE",
}

func kafkaErrorName(code int16) string {
	if code == -1 {
		return "UNKNOWN_SERVER_ERROR"
	}
	if code >= 0 && int(code) < len(kafkaErrorNames) {
		return kafkaErrorNames[code]
	}
	return fmt.Sprintf("ERROR_%d", code)
}
