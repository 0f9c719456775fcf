//! InitProducerId for idempotent producers: a new producer id with epoch 0,
//! or (v3+, KIP-360) the same id with the next epoch when the producer asks
//! to bump its epoch. Ids come from the controller shard
//! ([`crate::producer_ids`]). Transactional ids are refused: pinion has no
//! transaction coordinator.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{decode, respond, Outcome};
use crate::mesh::{CoreRequest, CoreResponse};
use crate::net::frame::Request;
use crate::placement::CONTROLLER_SHARD;
use crate::shard::ShardContext;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: InitProducerIdRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if body.transactional_id.is_some() {
        response.error_code = COORDINATOR_NOT_AVAILABLE;
        return respond(request, &response);
    }
    let (asked_id, asked_epoch) =
        if request.api_version >= 3 { (body.producer_id.0, body.producer_epoch) } else { (-1, -1) };
    if asked_id >= 0 && (0..i16::MAX - 1).contains(&asked_epoch) {
        // KIP-360: an idempotent producer bumps its own epoch.
        response.producer_id = ProducerId(asked_id);
        response.producer_epoch = asked_epoch + 1;
        return respond(request, &response);
    }
    match ctx.call(CONTROLLER_SHARD, CoreRequest::AllocateProducerId).await {
        CoreResponse::ProducerId(Ok(id)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        CoreResponse::ProducerId(Err(code)) => response.error_code = code,
        _ => response.error_code = COORDINATOR_NOT_AVAILABLE,
    }
    respond(request, &response)
}
