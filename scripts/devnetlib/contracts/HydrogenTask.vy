#pragma version 0.4.3
# @title Devnet stand-in for the Hydrogen (era B) Crynux Task contract
# @notice Behaviour of crynux-contracts@bf05e39 contracts/Task.sol with its
#         Node.sol folded in; written from reading them, not translated.
#         Client surface: createTask(uint,bytes32,bytes32,uint) nonpayable,
#         fee taskFeePerNode * 3 in CNX (balance check, allowance check,
#         transferFrom), three nodes selected at once (no queue) with
#         Node.sol's reverts, TaskCreated x3, the 16-field TaskInfo, the node
#         functions (commitment, disclosure, results uploaded, error report),
#         cancelTask, settlement (taskFeePerNode to each honest node, paid at
#         the rate current when it is paid, as Task.sol does) and deletion.
#         Node registry: Node.sol's indexes (available nodes, by VRAM, by GPU
#         id; OpenZeppelin EnumerableSet order: append, swap-and-pop) and its
#         selection (Random.sol multinomial over node counts). Nodes are
#         registered by the owner (`dev*`); no staking, no QOS kick-out.

interface Token:
    def balanceOf(account: address) -> uint256: view
    def allowance(owner: address, spender: address) -> uint256: view
    def transfer(to: address, amount: uint256) -> bool: nonpayable
    def transferFrom(sender: address, to: address, amount: uint256) -> bool: nonpayable

MAX_RESULT: constant(uint256) = 1024
MAX_NODES: constant(uint256) = 1024
MAX_KINDS: constant(uint256) = 64
MAX_BATCH: constant(uint256) = 128

# Task.sol's TaskInfo at bf05e39 (16 fields)
struct TaskInfo:
    id: uint256
    taskType: uint256
    creator: address
    taskHash: bytes32
    dataHash: bytes32
    vramLimit: uint256
    isSuccess: bool
    selectedNodes: DynArray[address, 3]
    commitments: DynArray[bytes32, 3]
    nonces: DynArray[bytes32, 3]
    results: DynArray[Bytes[MAX_RESULT], 3]
    resultDisclosedRounds: DynArray[uint256, 3]
    resultNode: address
    aborted: bool
    timeout: uint256
    balance: uint256

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

event TaskCreated:
    taskId: uint256
    taskType: uint256
    creator: indexed(address)
    selectedNode: indexed(address)
    taskHash: bytes32
    dataHash: bytes32
    round: uint256

event TaskResultCommitmentsReady:
    taskId: uint256

event TaskSuccess:
    taskId: uint256
    result: Bytes[MAX_RESULT]
    resultNode: indexed(address)

event TaskAborted:
    taskId: uint256
    reason: String[64]

TASK_TYPE_SD: constant(uint256) = 0
TASK_TYPE_LLM: constant(uint256) = 1
ERROR_COMMITMENT: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000001

# Node.sol NODE_STATUS_*
NODE_QUIT: constant(uint256) = 0
NODE_AVAILABLE: constant(uint256) = 1
NODE_BUSY: constant(uint256) = 2
NODE_PENDING_PAUSE: constant(uint256) = 3
NODE_PENDING_QUIT: constant(uint256) = 4
NODE_PAUSED: constant(uint256) = 5

owner: public(address)
cnxToken: Token
tasks: HashMap[uint256, TaskInfo]
nodeTasks: HashMap[address, uint256]
nextTaskId: uint256
taskFeePerNode: uint256
distanceThreshold: uint256
timeout: uint256
numSuccessTasks: uint256
numAbortedTasks: uint256
# Random.Generator (the nonce is never reset)
rngSeed: bytes32
rngNonce: uint256

# ---- Node.sol registry
nodeStatus: HashMap[address, uint256]
nodeGpuID: HashMap[address, bytes32]
nodeVram: HashMap[address, uint256]
numNodes: uint256
# _availableNodes (EnumerableSet.AddressSet): values + index + 1
availNodes: DynArray[address, MAX_NODES]
availIndex: HashMap[address, uint256]
# _availableGPUVramSet (UintSet) and _gpuVramNodesIndex
vramSet: DynArray[uint256, MAX_KINDS]
vramSetIndex: HashMap[uint256, uint256]
vramNodes: HashMap[uint256, DynArray[address, MAX_NODES]]
vramNodeIndex: HashMap[uint256, HashMap[address, uint256]]
# _availableGPUIDVramMap (Bytes32ToUintMap) and _gpuIDNodesIndex
gpuKeys: DynArray[bytes32, MAX_KINDS]
gpuKeyIndex: HashMap[bytes32, uint256]
gpuVramOf: HashMap[bytes32, uint256]
gpuNodes: HashMap[bytes32, DynArray[address, MAX_NODES]]
gpuNodeIndex: HashMap[bytes32, HashMap[address, uint256]]


@deploy
def __init__(token: address):
    self.owner = msg.sender
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)
    self.cnxToken = Token(token)
    self.taskFeePerNode = 10 * 10 ** 18
    self.nextTaskId = 1
    self.distanceThreshold = 5
    self.timeout = 15 * 60


@internal
def _onlyOwner():
    assert msg.sender == self.owner, "Ownable: caller is not the owner"


# ---------------------------------------------------------------- Ownable

@external
def renounceOwnership():
    self._onlyOwner()
    old: address = self.owner
    self.owner = empty(address)
    log OwnershipTransferred(previousOwner=old, newOwner=empty(address))


@external
def transferOwnership(newOwner: address):
    self._onlyOwner()
    assert newOwner != empty(address), "Ownable: new owner is the zero address"
    old: address = self.owner
    self.owner = newOwner
    log OwnershipTransferred(previousOwner=old, newOwner=newOwner)


# ---------------------------------------------------------------- client API

@external
def createTask(taskType: uint256, taskHash: bytes32, dataHash: bytes32, vramLimit: uint256):
    taskFee: uint256 = self.taskFeePerNode * 3
    assert taskType == TASK_TYPE_SD or taskType == TASK_TYPE_LLM, "Invalid task type"
    assert staticcall self.cnxToken.balanceOf(msg.sender) >= taskFee, "Not enough tokens for task"
    assert staticcall self.cnxToken.allowance(msg.sender, self) >= taskFee, "Not enough allowance for task"

    taskId: uint256 = self.nextTaskId
    self.nextTaskId = taskId + 1
    t: TaskInfo = empty(TaskInfo)
    t.id = taskId
    t.creator = msg.sender
    t.timeout = block.timestamp + self.timeout
    t.balance = taskFee
    t.taskType = taskType
    t.taskHash = taskHash
    t.dataHash = dataHash
    t.vramLimit = vramLimit
    t.commitments = [empty(bytes32), empty(bytes32), empty(bytes32)]
    t.nonces = [empty(bytes32), empty(bytes32), empty(bytes32)]
    self.tasks[taskId] = t
    # three empty results (appended: assigning them in the struct copies their full capacity)
    for i: uint256 in range(3):
        self.tasks[taskId].results.append(b"")

    assert extcall self.cnxToken.transferFrom(msg.sender, self, taskFee), "Task fee payment failed"

    seed: bytes32 = keccak256(concat(blockhash(block.number - 1), taskHash, dataHash))
    nodes: DynArray[address, 3] = self._getSelectedNodes(vramLimit, taskType == TASK_TYPE_LLM, seed)
    for i: uint256 in range(3):
        n: address = nodes[i]
        self.tasks[taskId].selectedNodes.append(n)
        self.nodeTasks[n] = taskId
        log TaskCreated(taskId=taskId, taskType=taskType, creator=msg.sender, selectedNode=n, taskHash=taskHash, dataHash=dataHash, round=i)


@external
def submitTaskResultCommitment(taskId: uint256, round: uint256, commitment: bytes32, nonce: bytes32):
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert round < 3, "Round not exist"
    assert self.tasks[taskId].selectedNodes[round] == msg.sender, "Not selected node"
    assert self.tasks[taskId].commitments[round] == empty(bytes32), "Already submitted"
    assert not self.tasks[taskId].aborted, "Task is aborted"
    nonces: DynArray[bytes32, 3] = self.tasks[taskId].nonces
    assert nonce != nonces[0] and nonce != nonces[1] and nonce != nonces[2], "Nonce already used"
    # qos.addTaskScore(msg.sender, number of commitments so far): no QOS here
    self.tasks[taskId].commitments[round] = commitment
    self.tasks[taskId].nonces[round] = nonce
    if self._isCommitmentReady(taskId):
        log TaskResultCommitmentsReady(taskId=taskId)


@external
def discloseTaskResult(taskId: uint256, round: uint256, result: Bytes[MAX_RESULT]):
    assert len(result) > 0, "Invalid result"
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert round < 3, "Round not exist"
    assert self.tasks[taskId].selectedNodes[round] == msg.sender, "Not selected node"
    assert len(self.tasks[taskId].results[round]) == 0, "Already submitted"
    c: DynArray[bytes32, 3] = self.tasks[taskId].commitments
    assert c[0] != empty(bytes32) and c[1] != empty(bytes32) and c[2] != empty(bytes32), "Commitments not ready"
    assert not self.tasks[taskId].aborted, "Task is aborted"
    assert c[round] == keccak256(concat(result, self.tasks[taskId].nonces[round])), "Mismatch result and commitment"
    self.tasks[taskId].results[round] = result
    self.tasks[taskId].resultDisclosedRounds.append(round)
    self._checkTaskResult(taskId)


@external
def reportResultsUploaded(taskId: uint256, round: uint256):
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert round < 3, "Round not exist"
    assert self.tasks[taskId].selectedNodes[round] == msg.sender, "Not selected node"
    assert self.tasks[taskId].resultNode == msg.sender, "Not result round"
    assert not self.tasks[taskId].aborted, "Task is aborted"
    self._settleNodeByRound(taskId, round)
    self._tryDeleteTask(taskId)


@external
def reportTaskError(taskId: uint256, round: uint256):
    # no aborted check (as in Task.sol): the third node of an error-reported
    # task reports too and is paid
    assert self.tasks[taskId].id != 0, "Task not exist"
    assert round < 3, "Round not exist"
    assert self.tasks[taskId].selectedNodes[round] == msg.sender, "Not selected node"
    assert self.tasks[taskId].commitments[round] == empty(bytes32), "Already submitted"
    self.tasks[taskId].commitments[round] = ERROR_COMMITMENT
    self.tasks[taskId].resultDisclosedRounds.append(round)
    if self._isCommitmentReady(taskId):
        log TaskResultCommitmentsReady(taskId=taskId)
    self._checkTaskResult(taskId)


@external
def cancelTask(taskId: uint256):
    assert self.tasks[taskId].id != 0, "Task not exist"
    callerValid: bool = msg.sender == self.tasks[taskId].creator
    if not callerValid:
        for n: address in self.tasks[taskId].selectedNodes:
            if n == msg.sender:
                callerValid = True
                break
    assert callerValid, "Unauthorized to cancel task"
    assert block.timestamp > self.tasks[taskId].timeout, "Task has not exceeded the deadline yet"
    balance: uint256 = self.tasks[taskId].balance
    if balance > 0:
        assert extcall self.cnxToken.transfer(self.tasks[taskId].creator, balance), "Token transfer failed"
        self.tasks[taskId].balance = 0
    if not self.tasks[taskId].aborted:
        log TaskAborted(taskId=taskId, reason="Task Cancelled")
    for n: address in self.tasks[taskId].selectedNodes:
        if self.nodeTasks[n] != 0:
            self.nodeTasks[n] = 0
            self._finishTask(n)
    self.tasks[taskId] = empty(TaskInfo)


@external
def updateTaskFeePerNode(fee: uint256):
    self._onlyOwner()
    self.taskFeePerNode = fee


@external
def updateDistanceThreshold(threshold: uint256):
    self._onlyOwner()
    self.distanceThreshold = threshold


@external
def updateTimeout(t: uint256):
    self._onlyOwner()
    self.timeout = t


@view
@external
def getTask(taskId: uint256) -> TaskInfo:
    return self.tasks[taskId]


@view
@external
def getNodeTask(nodeAddress: address) -> uint256:
    return self.nodeTasks[nodeAddress]


@view
@external
def totalTasks() -> uint256:
    return self.nextTaskId - 1


@view
@external
def totalSuccessTasks() -> uint256:
    return self.numSuccessTasks


@view
@external
def totalAbortedTasks() -> uint256:
    return self.numAbortedTasks


# Node.sol's views (crynux-contracts@bf05e39), which the devnet serves from the Task contract's
# address because it keeps the Node contract's state here: a client admits createTasks against them.

@view
@external
def availableNodes() -> uint256:
    return len(self.availNodes)


@view
@external
def filterGPUVram(vramLimit: uint256, countLimit: uint256) -> (DynArray[uint256, MAX_KINDS], DynArray[uint256, MAX_KINDS]):
    return self._filterGPUVram(vramLimit, countLimit)


@view
@external
def filterGPUID(vramLimit: uint256, countLimit: uint256) -> (DynArray[bytes32, MAX_KINDS], DynArray[uint256, MAX_KINDS]):
    return self._filterGPUID(vramLimit, countLimit)


# ---------------------------------------------------------------- task internals

@view
@internal
def _isCommitmentReady(taskId: uint256) -> bool:
    count: uint256 = 0
    errors: uint256 = 0
    for c: bytes32 in self.tasks[taskId].commitments:
        if c != empty(bytes32):
            count += 1
            if c == ERROR_COMMITMENT:
                errors += 1
    return count == 3 and errors < 2


@internal
def _tryDeleteTask(taskId: uint256):
    # delete once every selected node was settled, slashed or freed
    assert self.tasks[taskId].id != 0, "Task not exist"
    for n: address in self.tasks[taskId].selectedNodes:
        if self.nodeTasks[n] != 0:
            return
    self.tasks[taskId] = empty(TaskInfo)


@internal
def _checkTaskResult(taskId: uint256):
    disclosed: uint256 = len(self.tasks[taskId].resultDisclosedRounds)
    if disclosed == 2:
        # two agreeing results: the second discloser is paid and the first
        # one's result is the task's (TaskSuccess, or an error report abort)
        ok: bool = self._compareRoundResult(taskId, 0, 1)
        self.tasks[taskId].isSuccess = ok
        if ok:
            self._settleNodeByDiscloseIndex(taskId, 1)
            self._emitTaskFinishedEvent(taskId, 0)
    elif disclosed == 3:
        if self.tasks[taskId].isSuccess:
            if self._compareRoundResult(taskId, 0, 2):
                self._settleNodeByDiscloseIndex(taskId, 2)
            else:
                self._punishNodeByDiscloseIndex(taskId, 2)
        else:
            if self._compareRoundResult(taskId, 0, 2):
                self._settleNodeByDiscloseIndex(taskId, 2)
                self._punishNodeByDiscloseIndex(taskId, 1)
                self._emitTaskFinishedEvent(taskId, 0)
            elif self._compareRoundResult(taskId, 1, 2):
                self._settleNodeByDiscloseIndex(taskId, 2)
                self._punishNodeByDiscloseIndex(taskId, 0)
                self._emitTaskFinishedEvent(taskId, 1)
            else:
                self._abortTask(taskId)
        self._tryDeleteTask(taskId)


@internal
def _emitTaskFinishedEvent(taskId: uint256, honestRoundIndex: uint256):
    honestRound: uint256 = self.tasks[taskId].resultDisclosedRounds[honestRoundIndex]
    if len(self.tasks[taskId].results[honestRound]) > 0:
        node: address = self.tasks[taskId].selectedNodes[honestRound]
        self.tasks[taskId].resultNode = node
        self.numSuccessTasks += 1
        log TaskSuccess(taskId=taskId, result=self.tasks[taskId].results[honestRound], resultNode=node)
    else:
        # both agreeing "results" are error reports
        self._settleNodeByDiscloseIndex(taskId, honestRoundIndex)
        self.numAbortedTasks += 1
        log TaskAborted(taskId=taskId, reason="Task error reported")
        self.tasks[taskId].aborted = True
        for i: uint256 in range(3):
            c: bytes32 = self.tasks[taskId].commitments[i]
            if c != empty(bytes32) and c != ERROR_COMMITMENT:
                self._punishNodeByRound(taskId, i)
        self._tryDeleteTask(taskId)


@internal
def _abortTask(taskId: uint256):
    # three different results: the fee (at the current rate) back to the creator
    refund: uint256 = self.taskFeePerNode * 3
    assert extcall self.cnxToken.transfer(self.tasks[taskId].creator, refund), "Token transfer failed"
    self.tasks[taskId].balance -= refund
    for i: uint256 in range(3):
        round: uint256 = self.tasks[taskId].resultDisclosedRounds[i]
        n: address = self.tasks[taskId].selectedNodes[round]
        self.nodeTasks[n] = 0
        self._finishTask(n)
    self.numAbortedTasks += 1
    log TaskAborted(taskId=taskId, reason="Task result illegal")
    self.tasks[taskId].aborted = True


@view
@internal
def _compareRoundResult(taskId: uint256, indexA: uint256, indexB: uint256) -> bool:
    roundA: uint256 = self.tasks[taskId].resultDisclosedRounds[indexA]
    roundB: uint256 = self.tasks[taskId].resultDisclosedRounds[indexB]
    a: Bytes[MAX_RESULT] = self.tasks[taskId].results[roundA]
    b: Bytes[MAX_RESULT] = self.tasks[taskId].results[roundB]
    taskType: uint256 = self.tasks[taskId].taskType
    if taskType == TASK_TYPE_SD:
        return self._compareHamming(a, b, self.distanceThreshold)
    elif taskType == TASK_TYPE_LLM:
        return keccak256(a) == keccak256(b)
    raise "Invalid task type"


@pure
@internal
def _popcount(x: uint256) -> uint256:
    n: uint256 = 0
    v: uint256 = x
    for i: uint256 in range(64):
        if v == 0:
            break
        n += v & 1
        v = v >> 1
    return n


@pure
@internal
def _compareHamming(a: Bytes[MAX_RESULT], b: Bytes[MAX_RESULT], threshold: uint256) -> bool:
    # per 8-byte pHash: Hamming distance below the threshold
    if len(a) != len(b) or len(a) % 8 != 0:
        return False
    for i: uint256 in range(MAX_RESULT // 8):
        start: uint256 = i * 8
        if start >= len(a):
            break
        x: uint256 = convert(slice(a, start, 8), uint256) ^ convert(slice(b, start, 8), uint256)
        if self._popcount(x) >= threshold:
            return False
    return True


@internal
def _settleNodeByRound(taskId: uint256, round: uint256):
    n: address = self.tasks[taskId].selectedNodes[round]
    fee: uint256 = self.taskFeePerNode
    assert extcall self.cnxToken.transfer(n, fee), "Token transfer failed"
    self.tasks[taskId].balance -= fee
    self.nodeTasks[n] = 0
    self._finishTask(n)


@internal
def _settleNodeByDiscloseIndex(taskId: uint256, index: uint256):
    self._settleNodeByRound(taskId, self.tasks[taskId].resultDisclosedRounds[index])


@internal
def _punishNodeByRound(taskId: uint256, round: uint256):
    # the node's share goes back to the creator; the node is slashed
    n: address = self.tasks[taskId].selectedNodes[round]
    fee: uint256 = self.taskFeePerNode
    assert extcall self.cnxToken.transfer(self.tasks[taskId].creator, fee), "Token transfer failed"
    self.tasks[taskId].balance -= fee
    self.nodeTasks[n] = 0
    self._slash(n)


@internal
def _punishNodeByDiscloseIndex(taskId: uint256, index: uint256):
    self._punishNodeByRound(taskId, self.tasks[taskId].resultDisclosedRounds[index])


# ---------------------------------------------------------------- Node.sol

@internal
def _setAdd(node: address):
    # markNodeAvailable: VRAM index, GPU-id index, available set (in that order)
    vram: uint256 = self.nodeVram[node]
    gpu: bytes32 = self.nodeGpuID[node]
    if self.vramSetIndex[vram] == 0:
        self.vramSet.append(vram)
        self.vramSetIndex[vram] = len(self.vramSet)
    if self.vramNodeIndex[vram][node] == 0:
        self.vramNodes[vram].append(node)
        self.vramNodeIndex[vram][node] = len(self.vramNodes[vram])
    # EnumerableMap.set: a new key is appended, an existing one keeps its place
    self.gpuVramOf[gpu] = vram
    if self.gpuKeyIndex[gpu] == 0:
        self.gpuKeys.append(gpu)
        self.gpuKeyIndex[gpu] = len(self.gpuKeys)
    if self.gpuNodeIndex[gpu][node] == 0:
        self.gpuNodes[gpu].append(node)
        self.gpuNodeIndex[gpu][node] = len(self.gpuNodes[gpu])
    if self.availIndex[node] == 0:
        self.availNodes.append(node)
        self.availIndex[node] = len(self.availNodes)


@internal
def _removeVramNode(vram: uint256, node: address):
    idx: uint256 = self.vramNodeIndex[vram][node]
    if idx == 0:
        return
    last: address = self.vramNodes[vram].pop()
    if last != node:
        self.vramNodes[vram][idx - 1] = last
        self.vramNodeIndex[vram][last] = idx
    self.vramNodeIndex[vram][node] = 0


@internal
def _removeGpuNode(gpu: bytes32, node: address):
    idx: uint256 = self.gpuNodeIndex[gpu][node]
    if idx == 0:
        return
    last: address = self.gpuNodes[gpu].pop()
    if last != node:
        self.gpuNodes[gpu][idx - 1] = last
        self.gpuNodeIndex[gpu][last] = idx
    self.gpuNodeIndex[gpu][node] = 0


@internal
def _removeVramKey(vram: uint256):
    idx: uint256 = self.vramSetIndex[vram]
    if idx == 0:
        return
    last: uint256 = self.vramSet.pop()
    if last != vram:
        self.vramSet[idx - 1] = last
        self.vramSetIndex[last] = idx
    self.vramSetIndex[vram] = 0


@internal
def _removeGpuKey(gpu: bytes32):
    idx: uint256 = self.gpuKeyIndex[gpu]
    if idx == 0:
        return
    last: bytes32 = self.gpuKeys.pop()
    if last != gpu:
        self.gpuKeys[idx - 1] = last
        self.gpuKeyIndex[last] = idx
    self.gpuKeyIndex[gpu] = 0
    self.gpuVramOf[gpu] = 0


@internal
def _removeAvail(node: address):
    idx: uint256 = self.availIndex[node]
    if idx == 0:
        return
    last: address = self.availNodes.pop()
    if last != node:
        self.availNodes[idx - 1] = last
        self.availIndex[last] = idx
    self.availIndex[node] = 0


@internal
def _setRemove(node: address):
    # markNodeUnavailable (tolerates a node that is not indexed, as
    # EnumerableSet.remove does)
    vram: uint256 = self.nodeVram[node]
    gpu: bytes32 = self.nodeGpuID[node]
    self._removeVramNode(vram, node)
    if len(self.vramNodes[vram]) == 0:
        self._removeVramKey(vram)
    self._removeGpuNode(gpu, node)
    if len(self.gpuNodes[gpu]) == 0:
        self._removeGpuKey(gpu)
    self._removeAvail(node)


@internal
def _removeNode(node: address):
    self.nodeStatus[node] = NODE_QUIT
    self.numNodes -= 1


@internal
def _startTask(node: address):
    assert self.nodeStatus[node] == NODE_AVAILABLE, "Node is not available"
    self._setRemove(node)
    self.nodeStatus[node] = NODE_BUSY


@internal
def _finishTask(node: address):
    status: uint256 = self.nodeStatus[node]
    assert status == NODE_BUSY or status == NODE_PENDING_PAUSE or status == NODE_PENDING_QUIT, "Illegal node status"
    if status == NODE_BUSY:
        self._setAdd(node)
        self.nodeStatus[node] = NODE_AVAILABLE
    elif status == NODE_PENDING_QUIT:
        self._removeNode(node)
    elif status == NODE_PENDING_PAUSE:
        self.nodeStatus[node] = NODE_PAUSED


@internal
def _slash(node: address):
    status: uint256 = self.nodeStatus[node]
    assert status == NODE_BUSY or status == NODE_PENDING_PAUSE or status == NODE_PENDING_QUIT, "Illegal node status"
    # (the real Node.slash also moves the node's stake to the owner; devnet nodes stake nothing)
    self._setRemove(node)
    self._removeNode(node)


@internal
def _randint() -> uint256:
    r: uint256 = convert(keccak256(concat(self.rngSeed, convert(self.rngNonce, bytes32))), uint256)
    self.rngNonce += 1
    return r


@internal
def _multinomial(weights: DynArray[uint256, MAX_KINDS]) -> uint256:
    # Random.multinomial(weights, 0, n): value in [1, sum]; the first index
    # whose prefix sum reaches it
    assert len(weights) > 0, "multinomial start should be less than end"
    total: uint256 = 0
    for w: uint256 in weights:
        assert w > 0, "all multinomial weight should be greater than 0"
        total += w
    value: uint256 = 1 + self._randint() % total
    acc: uint256 = 0
    for i: uint256 in range(MAX_KINDS):
        acc += weights[i]
        if acc >= value:
            return i
    raise "multinomial: no index"


@view
@internal
def _filterGPUVram(vramLimit: uint256, countLimit: uint256) -> (DynArray[uint256, MAX_KINDS], DynArray[uint256, MAX_KINDS]):
    vrams: DynArray[uint256, MAX_KINDS] = []
    counts: DynArray[uint256, MAX_KINDS] = []
    for v: uint256 in self.vramSet:
        if v >= vramLimit:
            c: uint256 = len(self.vramNodes[v])
            if c >= countLimit:
                vrams.append(v)
                counts.append(c)
    assert len(vrams) > 0, "No kind of gpu vram meets condition"
    return vrams, counts


@view
@internal
def _filterGPUID(vramLimit: uint256, countLimit: uint256) -> (DynArray[bytes32, MAX_KINDS], DynArray[uint256, MAX_KINDS]):
    ids: DynArray[bytes32, MAX_KINDS] = []
    counts: DynArray[uint256, MAX_KINDS] = []
    for g: bytes32 in self.gpuKeys:
        if self.gpuVramOf[g] >= vramLimit:
            c: uint256 = len(self.gpuNodes[g])
            if c >= countLimit:
                ids.append(g)
                counts.append(c)
    assert len(ids) > 0, "No kind of gpu id meets condition"
    return ids, counts


@internal
def _getSelectedNodes(vramLimit: uint256, useSameGPU: bool, seed: bytes32) -> DynArray[address, 3]:
    # Task.getSelectedNodes(3, vramLimit, useSameGPU, seed)
    self.rngSeed = seed
    res: DynArray[address, 3] = []
    node: address = empty(address)
    if useSameGPU:
        ids: DynArray[bytes32, MAX_KINDS] = []
        counts: DynArray[uint256, MAX_KINDS] = []
        ids, counts = self._filterGPUID(vramLimit, 3)
        gpu: bytes32 = ids[self._multinomial(counts)]
        for i: uint256 in range(3):
            length: uint256 = len(self.gpuNodes[gpu])
            assert length > 0, "No available nodes of such gpu id"
            node = self.gpuNodes[gpu][self._randint() % length]
            self._startTask(node)
            res.append(node)
    elif vramLimit > 0:
        for i: uint256 in range(3):
            vrams: DynArray[uint256, MAX_KINDS] = []
            counts: DynArray[uint256, MAX_KINDS] = []
            vrams, counts = self._filterGPUVram(vramLimit, 1)
            vram: uint256 = vrams[self._multinomial(counts)]
            length: uint256 = len(self.vramNodes[vram])
            assert length > 0, "No available nodes of such vram"
            node = self.vramNodes[vram][self._randint() % length]
            self._startTask(node)
            res.append(node)
    else:
        for i: uint256 in range(3):
            length: uint256 = len(self.availNodes)
            assert length > 0, "No available nodes"
            node = self.availNodes[self._randint() % length]
            self._startTask(node)
            res.append(node)
    return res


# ---------------------------------------------------------------- devnet (owner only)

@payable
@external
def devRegisterNodes(nodes: DynArray[address, MAX_BATCH], gpuIDs: DynArray[bytes32, MAX_BATCH], vram: uint256):
    # Node.join for each node (no stake), or a new GPU id / VRAM for a
    # registered one (a busy node takes it when it is free again); msg.value
    # is shared among the nodes joining now (their gas money).
    self._onlyOwner()
    assert len(nodes) == len(gpuIDs), "length mismatch"
    joining: uint256 = 0
    for n: address in nodes:
        if self.nodeStatus[n] == NODE_QUIT:
            joining += 1
    share: uint256 = 0
    if joining > 0:
        share = msg.value // joining
    for i: uint256 in range(MAX_BATCH):
        if i >= len(nodes):
            break
        n: address = nodes[i]
        status: uint256 = self.nodeStatus[n]
        if status == NODE_QUIT:
            self.nodeGpuID[n] = gpuIDs[i]
            self.nodeVram[n] = vram
            self.nodeStatus[n] = NODE_AVAILABLE
            self.numNodes += 1
            self._setAdd(n)
            if share > 0:
                send(n, share)
        elif status == NODE_AVAILABLE:
            if self.nodeGpuID[n] != gpuIDs[i] or self.nodeVram[n] != vram:
                self._setRemove(n)
                self.nodeGpuID[n] = gpuIDs[i]
                self.nodeVram[n] = vram
                self._setAdd(n)
        else:
            if status == NODE_PENDING_QUIT:
                self.nodeStatus[n] = NODE_BUSY
            self.nodeGpuID[n] = gpuIDs[i]
            self.nodeVram[n] = vram


@external
def devUnregisterNodes(nodes: DynArray[address, MAX_BATCH]):
    # Node.quit: a free node leaves at once, a busy one when its task ends
    self._onlyOwner()
    for n: address in nodes:
        status: uint256 = self.nodeStatus[n]
        if status == NODE_AVAILABLE:
            self._setRemove(n)
            self._removeNode(n)
        elif status == NODE_PAUSED:
            self._removeNode(n)
        elif status == NODE_BUSY:
            self.nodeStatus[n] = NODE_PENDING_QUIT


@view
@external
def devAvailableNodes() -> uint256:
    return len(self.availNodes)


@view
@external
def devTotalNodes() -> uint256:
    return self.numNodes
