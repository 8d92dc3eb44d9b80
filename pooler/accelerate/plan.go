package accelerate

// A query plan is a tree of nodes compiled by the Prisma client; these are its typed forms.
// plan_decode.go builds them from the request's JSON.

type node interface{ kindName() string }

type (
	valueNode struct {
		value        any // a PrismaValue: may hold *paramRef and *generatorCall
		lastInsertID any // string or undefined
	}
	seqNode    struct{ items []node }
	getNode    struct{ name string }
	letBinding struct {
		name string
		expr node
	}
	letNode struct {
		bindings []letBinding
		expr     node
	}
	getFirstNonEmptyNode struct{ names []string }
	concatNode           struct{ items []node }
	sumNode              struct{ items []node }
	uniqueNode           struct{ expr node }
	requiredNode         struct{ expr node }
	reverseNode          struct{ expr node }
	joinChild            struct {
		child            node
		on               [][2]string
		parentField      string
		isRelationUnique bool
	}
	joinNode struct {
		parent                  node
		children                []joinChild
		canAssumeStrictEquality bool
	}
	mapFieldNode struct {
		field   string
		records node
	}
	dataMapNode struct {
		expr      node
		structure *resultNode
		enums     map[string]map[string]string
	}
	validateNode struct {
		expr            node
		rules           []dataRule
		errorIdentifier string
		context         *record
	}
	ifNode struct {
		value     node
		rule      dataRule
		then, els node
	}
	unitNode struct{}
	diffNode struct {
		from, to node
		fields   []string
	}
	fieldInitializer struct {
		name         string
		lastInsertID bool
		value        any
	}
	initializeRecordNode struct {
		expr   node
		fields []fieldInitializer
	}
	fieldOperation struct {
		name  string
		op    string // set, add, subtract, multiply, divide
		value any
	}
	mapRecordNode struct {
		expr   node
		fields []fieldOperation
	}
	processNode struct {
		expr node
		ops  *inMemoryOps
	}
	queryNode       struct{ q *dbQuery }
	executeNode     struct{ q *dbQuery }
	transactionNode struct{ expr node }
)

func (valueNode) kindName() string            { return "value" }
func (seqNode) kindName() string              { return "seq" }
func (getNode) kindName() string              { return "get" }
func (letNode) kindName() string              { return "let" }
func (getFirstNonEmptyNode) kindName() string { return "getFirstNonEmpty" }
func (concatNode) kindName() string           { return "concat" }
func (sumNode) kindName() string              { return "sum" }
func (uniqueNode) kindName() string           { return "unique" }
func (requiredNode) kindName() string         { return "required" }
func (reverseNode) kindName() string          { return "reverse" }
func (joinNode) kindName() string             { return "join" }
func (mapFieldNode) kindName() string         { return "mapField" }
func (dataMapNode) kindName() string          { return "dataMap" }
func (validateNode) kindName() string         { return "validate" }
func (ifNode) kindName() string               { return "if" }
func (unitNode) kindName() string             { return "unit" }
func (diffNode) kindName() string             { return "diff" }
func (initializeRecordNode) kindName() string { return "initializeRecord" }
func (mapRecordNode) kindName() string        { return "mapRecord" }
func (processNode) kindName() string          { return "process" }
func (queryNode) kindName() string            { return "query" }
func (executeNode) kindName() string          { return "execute" }
func (transactionNode) kindName() string      { return "transaction" }

// paramRef is a {"prisma__type":"param"} placeholder: a request parameter or a let binding.
type paramRef struct {
	name string
	typ  string // "DateTime" converts a string to a Date
}

// generatorCall is a {"prisma__type":"generatorCall"}: a value made on the server.
type generatorCall struct {
	name string
	args []any
}

// dataRule is a validate/if rule.
type dataRule struct {
	typ string // rowCountEq, rowCountNeq, affectedRowCountEq, never
	arg float64
}

// resultNode is dataMap's structure.
type resultNode struct {
	typ            string // affectedRows, object, field
	fields         []namedResult
	serializedName *string
	skipNulls      bool
	dbName         string
	fieldType      fieldType
}

type namedResult struct {
	name string
	node *resultNode
}

type fieldType struct {
	arity    string // required, optional, list
	typ      string // string, int, bigint, float, boolean, json, object, datetime, decimal, unsupported, enum, bytes
	enumName string
	encoding string // bytes: array, base64, hex
}

// inMemoryOps are a process node's operations.
type inMemoryOps struct {
	pagination    *pagination
	distinct      []string // nil: none
	hasDistinct   bool
	reverse       bool
	linkingFields []string
	hasLinking    bool
	nested        []nestedOps
}

type nestedOps struct {
	field string
	ops   *inMemoryOps
}

type pagination struct {
	cursor *record // values may hold placeholders
	take   *float64
	skip   *float64
}

// dbQuery is a query/execute node's statement.
type dbQuery struct {
	raw       bool
	sql       string // rawSql
	fragments []fragment
	prefix    string
	numbered  bool
	args      []any
	argTypes  []argType
	chunkable bool
	static    *staticStatement // set by prerender: the statement is the same for every request
}

type fragment struct {
	typ            string // stringChunk, parameter, parameterTuple, parameterTupleList
	chunk          string
	itemPrefix     string
	itemSeparator  string
	itemSuffix     string
	groupSeparator string
}

type argType struct {
	arity      string // scalar, list, tuple
	scalarType string
	dbType     string
	elements   []argType
}
