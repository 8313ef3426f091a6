package dynamo

import (
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/berth-registry/berth/pkg/storage"
)

// expr collects the attribute names and values one expression uses
// (DynamoDB rejects unused ones, so they are registered on use).
type expr struct {
	names  map[string]string
	values map[string]types.AttributeValue
}

func newExpr() *expr {
	return &expr{names: map[string]string{}, values: map[string]types.AttributeValue{}}
}

// n returns the placeholder for attribute a.
func (e *expr) n(a string) string {
	e.names["#"+a] = a
	return "#" + a
}

// v binds a value to placeholder :name.
func (e *expr) v(name string, av types.AttributeValue) string {
	e.values[":"+name] = av
	return ":" + name
}

func (e *expr) num(name string, x int64) string { return e.v(name, numAV(x)) }

func (e *expr) attrNames() map[string]string {
	if len(e.names) == 0 {
		return nil
	}
	return e.names
}

func (e *expr) attrValues() map[string]types.AttributeValue {
	if len(e.values) == 0 {
		return nil
	}
	return e.values
}

// notExpired holds for an absent item or a live one: it fails only for an
// item that is present but past its expiry.
func (e *expr) notExpired(now int64) string {
	return fmt.Sprintf("(attribute_not_exists(%s) OR %s > %s)", e.n(attrExpires), e.n(attrExpires), e.num("now", now))
}

// alive holds for a present, unexpired item.
func (e *expr) alive(now int64) string {
	return fmt.Sprintf("(attribute_exists(%s) AND %s)", e.n(attrPK), e.notExpired(now))
}

// absent holds for an absent or expired item.
func (e *expr) absent(now int64) string {
	return fmt.Sprintf("(attribute_not_exists(%s) OR %s <= %s)", e.n(attrPK), e.n(attrExpires), e.num("now", now))
}

// cond renders c; guard adds notExpired to CondNone (for writes that build
// on the old item's attributes, which an expired item must not lend).
func (e *expr) cond(c storage.Cond, now int64, guard bool) string {
	switch c.Kind {
	case storage.CondExists:
		return e.alive(now)
	case storage.CondNotExists:
		return e.absent(now)
	case storage.CondVersion:
		return fmt.Sprintf("%s AND %s = %s", e.alive(now), e.n(attrVersion), e.num("cv", c.Version))
	case storage.CondTouchedBy:
		return fmt.Sprintf("%s AND (attribute_not_exists(%s) OR %s <= %s)",
			e.alive(now), e.n(attrTouched), e.n(attrTouched), e.num("ct", c.At))
	default:
		if guard {
			return e.notExpired(now)
		}
		return ""
	}
}

func numAV(x int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(x, 10)}
}

func strAV(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func dataAV(b []byte) types.AttributeValue {
	if b == nil {
		b = []byte{}
	}
	return &types.AttributeValueMemberB{Value: b}
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: strAV(pk), attrSK: strAV(sk)}
}

// record is the full attribute map of it at version ver. Data is always
// present (possibly empty), which is what lets an update tell a new item
// from an old one with if_not_exists(data, ...); expires only when set.
func record(it storage.Item, ver int64) map[string]types.AttributeValue {
	m := key(it.PK, it.SK)
	m[attrData] = dataAV(it.Data)
	m[attrCount] = numAV(it.Count)
	m[attrVersion] = numAV(ver)
	m[attrTouched] = numAV(it.Touched)
	if it.Expires != 0 {
		m[attrExpires] = numAV(it.Expires)
	}
	return m
}

// decode turns an attribute map back into an Item.
func decode(m map[string]types.AttributeValue) (storage.Item, error) {
	var it storage.Item
	var err error
	str := func(a string) string {
		if v, ok := m[a].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		if err == nil {
			err = fmt.Errorf("dynamodb: item attribute %s missing or not a string", a)
		}
		return ""
	}
	num := func(a string) int64 {
		av, ok := m[a]
		if !ok {
			return 0
		}
		v, ok := av.(*types.AttributeValueMemberN)
		if !ok {
			if err == nil {
				err = fmt.Errorf("dynamodb: item attribute %s is not a number", a)
			}
			return 0
		}
		x, perr := strconv.ParseInt(v.Value, 10, 64)
		if perr != nil && err == nil {
			err = fmt.Errorf("dynamodb: item attribute %s: %w", a, perr)
		}
		return x
	}
	it.PK, it.SK = str(attrPK), str(attrSK)
	if v, ok := m[attrData].(*types.AttributeValueMemberB); ok && len(v.Value) > 0 {
		it.Data = v.Value
	}
	it.Count = num(attrCount)
	it.Version = num(attrVersion)
	it.Touched = num(attrTouched)
	it.Expires = num(attrExpires)
	return it, err
}

func expired(it storage.Item, now int64) bool { return it.Expires != 0 && it.Expires <= now }

func checkSize(it storage.Item) error {
	if len(it.Data) > storage.MaxItemBytes {
		return fmt.Errorf("dynamodb: item %s/%s data is %d bytes (limit %d): %w",
			it.PK, it.SK, len(it.Data), storage.MaxItemBytes, storage.ErrTooLarge)
	}
	return nil
}

// write is one write rendered for DynamoDB: either a whole-item put or an
// update, with its condition. Transact and the single-item calls share it.
type write struct {
	put    map[string]types.AttributeValue // PutItem when non-nil
	update string                          // UpdateExpression otherwise
	key    map[string]types.AttributeValue
	cond   string
	e      *expr
	// guarded: CondNone with the not-expired guard, whose failure means an
	// expired item is in the way (purge it and retry), not a caller error.
	guarded bool
}

func (w write) condPtr() *string {
	if w.cond == "" {
		return nil
	}
	return aws.String(w.cond)
}

// putWrite renders ItemPut / OpPut.
func putWrite(it storage.Item, c storage.Cond, now int64) write {
	e := newExpr()
	switch c.Kind {
	case storage.CondNotExists:
		// Absent or expired: the new item starts at version 1.
		return write{put: record(it, 1), cond: e.cond(c, now, false), e: e}
	case storage.CondVersion:
		return write{put: record(it, c.Version+1), cond: e.cond(c, now, false), e: e}
	}
	cond := e.cond(c, now, true)
	upd := fmt.Sprintf("SET %s = %s, %s = %s, %s = %s, %s = if_not_exists(%s, %s) + %s",
		e.n(attrData), e.v("d", dataAV(it.Data)),
		e.n(attrCount), e.num("c", it.Count),
		e.n(attrTouched), e.num("t", it.Touched),
		e.n(attrVersion), e.n(attrVersion), e.num("zero", 0), e.num("one", 1))
	if it.Expires != 0 {
		upd += fmt.Sprintf(", %s = %s", e.n(attrExpires), e.num("e", it.Expires))
	} else {
		upd += " REMOVE " + e.n(attrExpires)
	}
	return write{update: upd, key: key(it.PK, it.SK), cond: cond, e: e, guarded: c.Kind == storage.CondNone}
}

// addWrite renders ItemAdd / OpAdd. With CondNone the item may be new: it
// then takes it.Data (if_not_exists on data, which every item carries).
// it.Expires is honoured for new items only through CondNotExists (a put)
// or the read-first path of the callers; here a new item gets it too when
// the update creates it, see addNeedsRead.
func addWrite(it storage.Item, delta int64, c storage.Cond, now int64) write {
	e := newExpr()
	if c.Kind == storage.CondNotExists {
		it.Count = delta
		return write{put: record(it, 1), cond: e.cond(c, now, false), e: e}
	}
	var ver string
	switch c.Kind {
	case storage.CondVersion:
		ver = e.num("nv", c.Version+1)
	case storage.CondExists, storage.CondTouchedBy:
		ver = fmt.Sprintf("%s + %s", e.n(attrVersion), e.num("one", 1))
	default:
		ver = fmt.Sprintf("if_not_exists(%s, %s) + %s", e.n(attrVersion), e.num("zero", 0), e.num("one", 1))
	}
	cond := e.cond(c, now, true)
	set := fmt.Sprintf("SET %s = %s", e.n(attrVersion), ver)
	if c.Kind == storage.CondNone {
		set += fmt.Sprintf(", %s = if_not_exists(%s, %s)", e.n(attrData), e.n(attrData), e.v("d", dataAV(it.Data)))
	}
	if it.Touched != 0 {
		set += fmt.Sprintf(", %s = %s", e.n(attrTouched), e.num("t", it.Touched))
	}
	upd := fmt.Sprintf("%s ADD %s %s", set, e.n(attrCount), e.num("delta", delta))
	return write{update: upd, key: key(it.PK, it.SK), cond: cond, e: e, guarded: c.Kind == storage.CondNone}
}

// addNeedsRead reports whether an add must read the item first to know if
// it creates it: only a CondNone add that carries an expiry, which an
// update expression cannot apply to new items alone.
func addNeedsRead(it storage.Item, c storage.Cond) bool {
	return c.Kind == storage.CondNone && it.Expires != 0
}

// deleteWrite renders ItemDelete / OpDelete (put and update are unused).
func deleteWrite(pk, sk string, c storage.Cond, now int64) write {
	e := newExpr()
	return write{key: key(pk, sk), cond: e.cond(c, now, false), e: e}
}

// checkWrite renders OpCheck. CondNone checks nothing but still needs an
// expression.
func checkWrite(pk, sk string, c storage.Cond, now int64) write {
	e := newExpr()
	cond := e.cond(c, now, false)
	if cond == "" {
		cond = fmt.Sprintf("attribute_exists(%s) OR attribute_not_exists(%s)", e.n(attrPK), e.n(attrPK))
	}
	return write{key: key(pk, sk), cond: cond, e: e}
}
