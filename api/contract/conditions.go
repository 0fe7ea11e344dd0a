package contract

// Condition types on klambda's objects (status.conditions).
const (
	// ConditionReady: the object's generation is fully realized (a Function Active with its
	// rollout complete, a Version's environments applied, an Alias routing as its spec says,
	// a mapping in its desired state, a LayerVersion's content available).
	ConditionReady = "Ready"
	// ConditionReconciling (kstatus): True, with a reason, while work on the object's
	// generation is in progress; absent otherwise.
	ConditionReconciling = "Reconciling"
	// ConditionStalled (kstatus): True, with Lambda's reason code, when the object cannot
	// progress without a change; absent otherwise.
	ConditionStalled = "Stalled"
	// ConditionCodeResolved: code and layers were fetched and checked.
	ConditionCodeResolved = "CodeResolved"
	// ConditionRolloutComplete: the Deployment runs the current template everywhere.
	ConditionRolloutComplete = "RolloutComplete"
	// ConditionPublished (Version): the version has a number.
	ConditionPublished = "Published"
	// ConditionDeletionBlocked: a Version referenced by an Alias, or a LayerVersion in use,
	// waits for its references to go.
	ConditionDeletionBlocked = "DeletionBlocked"
	// ConditionDestinationsAuthorized: the function's service account may invoke its
	// Function destinations.
	ConditionDestinationsAuthorized = "DestinationsAuthorized"
)

// Condition reasons other components may test.
const (
	ReasonPublished          = "Published"
	ReasonUnchanged          = "Unchanged"
	ReasonPreconditionFailed = "PreconditionFailed"
	ReasonFunctionNotReady   = "FunctionNotReady"
	ReasonFunctionNotFound   = "FunctionNotFound"
	ReasonVersionNotFound    = "VersionNotFound"
	ReasonReferencedByAlias  = "ReferencedByAlias"
	ReasonInUse              = "InUse"
	ReasonResolved           = "Resolved"
	ReasonInProgress         = "InProgress"
	ReasonAccessDenied       = "AccessDenied"
)
