//! The workflows service over gRPC: `plexspaces.v1.WorkflowService`, in the token's
//! tenant. JSON travels as text fields (`input_json`, `payload_json`, ...).

use plexspaces_proto::v1::workflow_service_server::{WorkflowService, WorkflowServiceServer};
use plexspaces_proto::v1::{
    CancelWorkflowRequest, CancelWorkflowResponse, DescribeWorkflowRequest,
    DescribeWorkflowResponse, ListWorkflowsRequest, ListWorkflowsResponse, QueryWorkflowRequest,
    QueryWorkflowResponse, SignalWorkflowRequest, SignalWorkflowResponse, StartWorkflowRequest,
    StartWorkflowResponse, UpdateWorkflowRequest, UpdateWorkflowResponse, WorkflowFailure,
    WorkflowHistoryRequest, WorkflowHistoryResponse, WorkflowInfo, WorkflowResultRequest,
    WorkflowResultResponse,
};
use plexspaces_workflow::{Failure, WorkflowKey, WorkflowRecord};
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::grpc::caller;
use crate::service::{field_id, NodeServices};
use crate::workflows::{new_update_id, Outcome};

/// `plexspaces.v1.WorkflowService` over the node's workflows service.
#[derive(Clone)]
pub struct WorkflowApi(pub NodeServices);

impl std::fmt::Debug for WorkflowApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowApi").finish_non_exhaustive()
    }
}

impl WorkflowApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> WorkflowServiceServer<Self> {
        WorkflowServiceServer::new(self)
    }

    /// The workflow a request names, in the caller's tenant.
    fn key<T>(
        &self,
        request: &Request<T>,
        namespace: &str,
        workflow_id: &str,
    ) -> Result<WorkflowKey, Status> {
        let caller = caller(&self.0, request, None)?;
        Ok(self.0.workflows.key(&caller, namespace, workflow_id)?)
    }
}

/// JSON text of a request field; empty is `null`.
fn json_field(field: &str, text: &str) -> Result<Value, Status> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text)
        .map_err(|e| Error::BadRequest(format!("{field} is not JSON: {e}")).into())
}

fn failure_of(f: Failure) -> WorkflowFailure {
    WorkflowFailure {
        kind: f.kind,
        message: f.message,
    }
}

fn info_of(record: WorkflowRecord) -> WorkflowInfo {
    WorkflowInfo {
        tenant: record.key.tenant,
        namespace: record.key.namespace,
        workflow_id: record.key.workflow_id,
        workflow_type: record.workflow_type,
        version: record.version,
        run: record.run,
        status: record.status.as_str().to_owned(),
        input_json: record.input.to_string(),
        result_json: record.result.map(|v| v.to_string()).unwrap_or_default(),
        failure: record.failure.map(failure_of),
        queries_json: record.queries.map(|v| v.to_string()).unwrap_or_default(),
        parent: record.parent.unwrap_or_default(),
        created_ms: record.created_ms,
        updated_ms: record.updated_ms,
    }
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn start(
        &self,
        request: Request<StartWorkflowRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let input = json_field("input_json", &r.input_json)?;
        let started = self
            .0
            .workflows
            .start(&key, &r.workflow_type, &input)
            .await?;
        Ok(Response::new(StartWorkflowResponse {
            namespace: started.key.namespace,
            workflow_id: started.key.workflow_id,
            workflow_type: started.workflow_type,
            run: started.run,
            status: started.status.as_str().to_owned(),
            already_started: started.already_started,
        }))
    }

    async fn signal(
        &self,
        request: Request<SignalWorkflowRequest>,
    ) -> Result<Response<SignalWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let payload = json_field("payload_json", &r.payload_json)?;
        let dedupe_id = (!r.dedupe_id.is_empty()).then_some(r.dedupe_id.as_str());
        if let Some(id) = dedupe_id {
            field_id("dedupe_id", id)?;
        }
        let seq = self
            .0
            .workflows
            .signal(&key, &r.name, &payload, dedupe_id)
            .await?;
        Ok(Response::new(SignalWorkflowResponse { seq }))
    }

    async fn query(
        &self,
        request: Request<QueryWorkflowRequest>,
    ) -> Result<Response<QueryWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let value = self.0.workflows.query(&key, &r.name).await?;
        Ok(Response::new(QueryWorkflowResponse {
            value_json: value.to_string(),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateWorkflowRequest>,
    ) -> Result<Response<UpdateWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let payload = json_field("payload_json", &r.payload_json)?;
        let update_id = if r.update_id.is_empty() {
            new_update_id()
        } else {
            field_id("update_id", &r.update_id)?;
            r.update_id.clone()
        };
        let wait_ms = (r.wait_ms != 0).then_some(r.wait_ms);
        let value = self
            .0
            .workflows
            .update(&key, &r.name, &payload, &update_id, wait_ms)
            .await?;
        Ok(Response::new(UpdateWorkflowResponse {
            value_json: value.to_string(),
            update_id,
        }))
    }

    async fn cancel(
        &self,
        request: Request<CancelWorkflowRequest>,
    ) -> Result<Response<CancelWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        self.0.workflows.cancel(&key, Some(&r.reason)).await?;
        Ok(Response::new(CancelWorkflowResponse {}))
    }

    async fn get_result(
        &self,
        request: Request<WorkflowResultRequest>,
    ) -> Result<Response<WorkflowResultResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let outcome = self.0.workflows.result(&key, r.wait_ms).await?;
        Ok(Response::new(match outcome {
            Outcome::Completed(result) => WorkflowResultResponse {
                status: "completed".into(),
                result_json: result.to_string(),
                failure: None,
            },
            Outcome::Ended { status, failure } => WorkflowResultResponse {
                status: status.as_str().to_owned(),
                result_json: String::new(),
                failure: Some(failure_of(failure)),
            },
            Outcome::Running => WorkflowResultResponse {
                status: "running".into(),
                result_json: String::new(),
                failure: None,
            },
        }))
    }

    async fn describe(
        &self,
        request: Request<DescribeWorkflowRequest>,
    ) -> Result<Response<DescribeWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let d = self.0.workflows.describe(&key).await?;
        Ok(Response::new(DescribeWorkflowResponse {
            workflow: Some(info_of(d.record)),
            history_events: d.history_events,
            active_here: d.active_here,
        }))
    }

    async fn list(
        &self,
        request: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        let caller = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let namespace = (!r.namespace.is_empty()).then_some(r.namespace.as_str());
        let limit = (r.limit != 0).then_some(u64::from(r.limit));
        let records = self
            .0
            .workflows
            .list(&caller, namespace, Some(&r.status), limit)
            .await?;
        Ok(Response::new(ListWorkflowsResponse {
            workflows: records.into_iter().map(info_of).collect(),
        }))
    }

    async fn get_history(
        &self,
        request: Request<WorkflowHistoryRequest>,
    ) -> Result<Response<WorkflowHistoryResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let run = (r.run != 0).then_some(r.run);
        let (run, events) = self.0.workflows.history(&key, run).await?;
        let events_json = events
            .iter()
            .map(|e| serde_json::to_string(e).map_err(|e| Error::Io(format!("history: {e}"))))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Response::new(WorkflowHistoryResponse { run, events_json }))
    }
}
