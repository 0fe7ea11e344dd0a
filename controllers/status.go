package controllers

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types.
const (
	// ConditionReady: the object is usable (a Function Active, a Version published and
	// deployed, an Alias resolved, a LayerVersion resolved).
	ConditionReady = "Ready"
	// ConditionCodeResolved: code and layers were fetched and checked.
	ConditionCodeResolved = "CodeResolved"
	// ConditionRolloutComplete: the Deployment runs the current template everywhere.
	ConditionRolloutComplete = "RolloutComplete"
	// ConditionPublished (Version): the version has a number. Reason Published when this
	// object published it; reason Unchanged when nothing changed since the last published
	// version, whose number status.version then holds (as Lambda's PublishVersion answers).
	ConditionPublished = "Published"
	// ConditionDeletionBlocked: a Version referenced by an Alias, or a LayerVersion in use,
	// waits to be deleted.
	ConditionDeletionBlocked = "DeletionBlocked"
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
)

func setCondition(conds *[]metav1.Condition, gen int64, typ string, ok bool, reason, msg string) {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	if len(msg) > 32000 {
		msg = msg[:32000]
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen})
}

// revisionID is a UUID-shaped digest of what makes a revision: it changes with every change
// of configuration (generation) or code, and stays put across reconciles.
func revisionID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	h := hex.EncodeToString(sum[:16])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
