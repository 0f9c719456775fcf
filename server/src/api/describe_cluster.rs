//! DescribeCluster: the cluster id and its one broker, which is also the controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{decode, respond, str_bytes, Outcome};
use crate::net::frame::Request;
use crate::shard::ShardContext;

pub fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let _body: DescribeClusterRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let (host, port) = ctx.config.advertised_host_port();
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(ctx.config.node_id))
        .with_host(str_bytes(&host))
        .with_port(port);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&ctx.cluster_id))
        .with_controller_id(BrokerId(ctx.config.node_id))
        .with_brokers(vec![broker]);
    respond(request, &response)
}
